"""End-to-end runs of scripts/finetune.py on CPU with a tiny random model and the real default tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from conftest import SAMPLE, assert_scored_predictions, save_tiny_llama
from safetensors.torch import load_file

from finqa_dsl.core.data import load_examples
from finqa_dsl.runs import files as run_files
from scripts import finetune as driver

PREDICTION_FIELDS = {"id", "question", "prompt", "generation", "gold_program", "latency_ms", "latency_mode",
                     "failure_reason"}


def finetune(tmp_path: Path, *flags: str) -> int:
    """Run the driver in ``tmp_path`` (its __output__ goes there) on the sample data."""
    data = ["--train_file", str(SAMPLE / "train.json"), "--eval_file", str(SAMPLE / "dev.json"),
            "--test_file", str(SAMPLE / "test.json"), "--max_train_samples", "8", "--max_eval_samples", "4",
            "--max_test_samples", "4", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
            "--num_train_epochs", "1", "--logging_steps", "1", "--generation_max_new_tokens", "8",
            "--inference_batch_size", "2", "--max_seq_length", "1024", "--report_to", "none"]
    return driver.main([*data, *flags])


def run_folder(root: Path, name: str) -> Path:
    return root / "__output__" / name


def assert_loss_log_matches_metrics(folder: Path, log_name: str, key: str) -> list[float]:
    """``log_name`` is a header and one ``step epoch value`` line per ``key`` in metrics.jsonl, same values."""
    header, *lines = (folder / log_name).read_text().splitlines()
    assert header.split("\t") == ["step", "epoch", key]
    logged = [(int(step), float(epoch), float(value)) for step, epoch, value in (line.split("\t") for line in lines)]
    rows = [json.loads(line) for line in (folder / run_files.METRICS).read_text().splitlines()]
    assert logged == [(row["step"], row["epoch"], row[key]) for row in rows if key in row]
    assert logged, f"{log_name} holds no {key}"
    return [value for _, _, value in logged]


# The whole matrix is slow; one case of it stays in the fast suite.
MATRIX = [pytest.param(peft, target, mode, marks=() if (peft, target, mode) == ("lora", "program", "gold")
                       else pytest.mark.slow, id=f"{peft}-{target}-{mode}")
          for peft in ("none", "lora", "qlora") for target in ("program", "numerical", "answer")
          for mode in ("gold", "all", "noisy_gold")]


@pytest.mark.parametrize(("peft", "target_field", "input_mode"), MATRIX)
def test_train_and_test_write_every_output(in_tmp, tiny_model_dir, peft, target_field, input_mode):
    assert finetune(in_tmp, "--model_name", str(tiny_model_dir), "--peft", peft, "--target_field", target_field,
                    "--input_mode", input_mode, "--do_train", "--do_test", "--output_folder", "run") == 0
    folder = run_folder(in_tmp, "run")
    args = json.loads((folder / run_files.ARGS).read_text())
    assert (args["peft"], args["target_field"], args["input_mode"]) == (peft, target_field, input_mode)
    saved = {path.name for path in (folder / run_files.FINAL_MODEL).iterdir()}
    weights = {"adapter_config.json", "adapter_model.safetensors"} if peft != "none" else {"config.json",
                                                                                        "model.safetensors"}
    assert weights | {"tokenizer.json", "tokenizer_config.json"} <= saved, saved
    assert ("adapter_config.json" in saved) == (peft != "none"), "LoRA/QLoRA save the adapter, not merged weights"
    assert len(assert_loss_log_matches_metrics(folder, run_files.TRAIN_LOSS_LOG, "loss")) == 2  # 8 examples / 4
    trained = json.loads((folder / run_files.TRAIN_METRICS).read_text())
    assert trained["train_encoding"]["kept"] == 8 and trained["train_prompt_truncation"]["examples"] == 8
    logged = [json.loads(line) for line in (folder / run_files.METRICS).read_text().splitlines()]
    assert any("loss" in row for row in logged)
    predictions, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", target_field, n=4)
    assert all(row.keys() >= PREDICTION_FIELDS for row in predictions)
    assert [row["id"] for row in predictions] == [example.id for example in load_examples(SAMPLE / "test.json")[:4]]
    assert (metrics["input_mode"], metrics["eval_type"]) == (input_mode, "fine-tuned")
    assert {f"inference_latency_ms_{k}" for k in ("avg", "p50", "p90", "p95", "p99")} <= metrics.keys()
    latencies = [json.loads(line) for line in (folder / run_files.TEST_LATENCIES).read_text().splitlines()]
    assert latencies == [{"id": row["id"], "latency_ms": row["latency_ms"]} for row in predictions]
    timing = json.loads((folder / run_files.TIMING).read_text())
    assert timing["train_duration_seconds"] > 0 and timing["test_inference_duration_seconds"] > 0
    assert timing["peak_host_memory_bytes"] > 0
    for plot in (run_files.LOSS_PLOT, run_files.LATENCY_PLOT):
        assert (folder / plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), plot


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["none", "lora"])
def test_saved_final_model_reloads_for_eval_only(in_tmp, tiny_model_dir, peft):
    assert finetune(in_tmp, "--model_name", str(tiny_model_dir), "--peft", peft, "--do_train", "--do_test",
                    "--output_folder", "trained") == 0
    trained = run_folder(in_tmp, "trained")
    assert finetune(in_tmp, "--model_name", str(trained / run_files.FINAL_MODEL), "--do_eval", "--do_test",
                    "--output_folder", "reloaded") == 0
    first = [json.loads(line)["generation"] for line in (trained / run_files.TEST_PREDICTIONS).open()]
    again = [json.loads(line)["generation"] for line in
             (run_folder(in_tmp, "reloaded") / run_files.TEST_PREDICTIONS).open()]
    assert first == again, "the saved model must generate what the trained one did (greedy decoding)"
    reloaded = run_folder(in_tmp, "reloaded")
    assert_scored_predictions(reloaded, SAMPLE / "test.json", "program", n=4)
    (eval_loss,) = assert_loss_log_matches_metrics(reloaded, run_files.EVAL_LOSS_LOG, "eval_loss")
    assert eval_loss == json.loads((reloaded / run_files.TRAIN_METRICS).read_text())["eval_loss"] > 0


def test_interrupted_test_inference_resumes_and_a_finished_run_is_kept(in_tmp, tiny_model_dir):
    flags = ("--model_name", str(tiny_model_dir), "--do_test", "--output_folder", "zs")
    assert finetune(in_tmp, *flags) == 0
    folder = run_folder(in_tmp, "zs")
    complete = (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True)
    # Simulate a crash: two finished lines, a torn third one, and no timing.json (the run never finished).
    (folder / run_files.TEST_PREDICTIONS).write_text("".join(complete[:2]) + complete[2][:20])
    (folder / run_files.TIMING).unlink()
    assert finetune(in_tmp, *flags) == 0
    resumed = (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True)
    assert resumed[:2] == complete[:2] and len(resumed) == 4
    assert [json.loads(x)["id"] for x in resumed] == [json.loads(x)["id"] for x in complete]
    _, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", "program", n=4)
    assert (metrics["inference_examples_resumed"], metrics["inference_examples_generated"]) == (2, 2)
    # The folder is finished now: the same command goes to a new folder instead of overwriting it.
    assert finetune(in_tmp, *flags) == 0
    assert run_folder(in_tmp, "zs--2").is_dir()
    assert (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True) == resumed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--do_test", "--input_mode", "golden"), "--input_mode 'golden' is not one of"),
        (("--do_test", "--table_format", "markdown"), "--table_format 'markdown' is not one of"),
        (("--do_test", "--target_field", "python"), "--target_field 'python' is not one of"),
        (("--do_test", "--peft", "dora"), "--peft 'dora' is not one of"),
        ((), "Nothing to do"),
        (("--do_test", "--generation_temperature", "0.7"), "only apply with --generation_do_sample"),
        (("--do_test", "--test_file", "FinQA/dataset/test.json"), "scripts/download_finqa.py"),
        (("--do_test", "--bf16", "true"), "bf16"),
        (("--do_test", "--inference_engine", "continuous", "--generation_num_beams", "2"),
         "--inference_engine continuous does not do beam search (--generation_num_beams 2): use "
         "--inference_engine auto or static"),
        (("--do_test", "--inference_engine", "paged"), "--inference_engine 'paged' is not one of"),
    ],
)
def test_bad_flags_fail_before_any_model_loads(in_tmp, capsys, flags, message):
    # A model name that cannot load proves that the error comes first.
    assert finetune(in_tmp, "--model_name", "/nonexistent/model", *flags) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_wandb_offline_logs_training_and_test_metrics(in_tmp, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    assert finetune(in_tmp, "--model_name", str(tiny_model_dir), "--peft", "lora", "--do_train", "--do_test",
                    "--output_folder", "logged", "--wandb_project", "finqa-test", "--wandb_mode", "offline") == 0
    runs = list((run_folder(in_tmp, "logged") / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run, shared by the Trainer and the test metrics"
    (records,) = runs[0].glob("*.wandb")  # the offline run's log; its protobuf records hold the keys verbatim
    logged = records.read_bytes()
    for key in (b"train/loss", b"test/execution_accuracy", b"timing/test_inference_duration_seconds",
                b"test/latency_ms"):
        assert key in logged, sorted(set(re.findall(rb"[a-z_]+/[a-z_]+", logged)))


def test_qlora_names_the_layer_that_the_cpu_4bit_kernel_cannot_run(in_tmp, tmp_path_factory, default_tokenizer,
                                                                    capsys):
    # hidden size 32: every attention input is narrower than one quantisation block of 64
    narrow = save_tiny_llama(tmp_path_factory.mktemp("narrow-llama"), default_tokenizer, 32, 64)
    code = finetune(in_tmp, "--model_name", str(narrow), "--peft", "qlora", "--do_train", "--do_test",
                    "--max_train_samples", "4", "--max_test_samples", "2", "--output_folder", "narrow")
    if torch.cuda.is_available() or not has_avx512bf16():
        assert code == 0, "bitsandbytes dequantises on this backend, which takes any shape"
        return
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: 4-bit layer model.layers.0.self_attn.q_proj (32 inputs, 32 outputs) cannot run on this CPU: "
        "bitsandbytes' AVX-512-BF16 kernel needs outputs divisible by 32 and inputs divisible by the "
        "quantisation block size 64. Use --peft lora, or a model whose layers fit (the text layers of SmolLM2, "
        "Qwen2.5, Gemma-3 and Mistral do).")
    assert not (run_folder(in_tmp, "narrow") / run_files.METRICS).exists(), "it stops before training"


@pytest.mark.slow
def test_seed_gives_the_same_adapter_and_predictions_and_another_seed_another_adapter(in_tmp, tiny_model_dir):
    def run(name: str, seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
        assert finetune(in_tmp, "--model_name", str(tiny_model_dir), "--peft", "lora", "--do_train", "--do_test",
                        "--max_train_samples", "4", "--max_test_samples", "2", "--seed", str(seed),
                        "--output_folder", name) == 0
        folder = run_folder(in_tmp, name)
        predictions = [json.loads(line)["generation"] for line in (folder / run_files.TEST_PREDICTIONS).open()]
        return load_file(folder / run_files.FINAL_MODEL / "adapter_model.safetensors"), predictions

    (adapter, predictions), (again, predicted_again), (other, _) = run("a", 3), run("b", 3), run("c", 4)
    assert adapter.keys() == again.keys() == other.keys()
    assert all(torch.equal(adapter[key], again[key]) for key in adapter)
    assert predictions == predicted_again
    lora_a = [key for key in adapter if "lora_A" in key]
    assert lora_a and all(not torch.equal(adapter[key], other[key]) for key in lora_a)
