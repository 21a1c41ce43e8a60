"""The driver on bad input: one clear line and exit 2 before any model loads and before any run folder is
made; resumed runs that keep every finished line and report numbers over the rows they cover; a run's
predictions re-scored with no flag give its test_metrics.json."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SAMPLE, real_tokenizer, tiny_model

from finqa_dsl.core.targets import get_target
from finqa_dsl.models import loading
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.folder import resolve_run_folder
from scripts import finetune as driver
from scripts import score_predictions


def flags(*extra: str, test_file: Path | str = SAMPLE / "test.json") -> list[str]:
    return ["--test_file", str(test_file), "--train_file", str(SAMPLE / "train.json"), "--max_test_samples", "4",
            "--generation_max_new_tokens", "8", "--inference_batch_size", "2", "--report_to", "none", "--do_test",
            *extra]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a model fails the test: the errors under test must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(loading, "load_model", refuse)


def error_line(capsys) -> str:
    """The one line the driver wrote for a user error (stderr may also hold library import warnings)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def sample_records(n: int) -> list[dict]:
    return json.loads((SAMPLE / "test.json").read_text())[:n]


def broken_record() -> list[dict]:
    records = sample_records(2)
    del records[1]["qa"]["exe_ans"]
    return records


@pytest.mark.parametrize(("content", "message"), [
    ("", "test.json: empty file (expected FinQA records"),
    ([], "--test_file {path}: no examples (the file holds no records)"),
    ("[{", "test.json: invalid JSON at line 1 column 3"),
    (broken_record(), "test.json: record {id}: field 'qa.exe_ans': a finite number or 'yes'/'no', got None"),
])
def test_a_malformed_or_empty_test_set_fails_before_the_model_and_leaves_no_folder(
        in_tmp, tiny_model_dir, capsys, no_model_loads, content, message):
    path = write(in_tmp / "test.json", content)
    assert driver.main(flags("--model_name", str(tiny_model_dir), test_file=path)) == 2
    expected = message.format(path=path, id=sample_records(2)[1]["id"])
    assert expected in error_line(capsys)
    assert not (in_tmp / "__output__").exists()


def test_the_answer_target_needs_every_answer_before_the_model_loads(in_tmp, tiny_model_dir, capsys, no_model_loads):
    records = sample_records(3)
    del records[2]["qa"]["answer"]
    path = write(in_tmp / "test.json", records)
    assert driver.main(flags("--model_name", str(tiny_model_dir), "--target_field", "answer", test_file=path)) == 2
    assert f"record {records[2]['id']}: field 'qa.answer'" in error_line(capsys)


@pytest.mark.parametrize(("model", "message"), [
    ("{tmp}/absent", "--model_name {tmp}/absent: no such model folder"),
    ("{tmp}/empty", "--model_name {tmp}/empty: empty folder"),
    ("{tmp}/tokenizer_only", "--model_name {tmp}/tokenizer_only: not a model folder: no config.json"),
    ("{tmp}/adapter", "{tmp}/adapter/adapter_config.json: base_model_name_or_path /nonexistent/base: no such model"),
])
def test_a_missing_or_incomplete_model_folder_fails_before_any_model_loads(
        in_tmp, capsys, no_model_loads, model, message):
    (in_tmp / "empty").mkdir()
    (in_tmp / "tokenizer_only").mkdir()
    write(in_tmp / "tokenizer_only" / "tokenizer_config.json", {})
    (in_tmp / "adapter").mkdir()
    write(in_tmp / "adapter" / "adapter_config.json", {"base_model_name_or_path": "/nonexistent/base"})
    assert driver.main(flags("--model_name", model.format(tmp=in_tmp))) == 2
    assert message.format(tmp=in_tmp) in error_line(capsys)
    assert not (in_tmp / "__output__").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (("--max_seq_length", "8"), "--max_seq_length 8 leaves no room for a prompt: it must exceed "
                                 "--generation_max_new_tokens 8"),
    (("--max_seq_length", "-5"), "--max_seq_length -5 leaves no room for a prompt"),
    (("--generation_max_new_tokens", "-1"), "--generation_max_new_tokens must be >= 1"),
    (("--max_test_samples", "-1"), "--max_test_samples must be >= 0, got -1"),
    (("--max_seq_length", "10"), "--max_seq_length 10 minus --generation_max_new_tokens 8 leaves 2 prompt tokens, "
                                 "but the shortest prompt of --test_file"),
])
def test_nonsense_sizes_are_refused(in_tmp, tiny_model_dir, capsys, no_model_loads, extra, message):
    assert driver.main([*flags("--model_name", str(tiny_model_dir)), *extra]) == 2
    assert message in error_line(capsys)
    assert not (in_tmp / "__output__").exists()


def run_script(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "finetune.py"), *argv], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.slow
def test_as_a_script_an_unknown_hub_id_offline_and_a_missing_config_file_are_one_line_each(tmp_path):
    result = run_script(tmp_path, *flags("--model_name", "finqa-dsl-tests/no-such-model-3f9c1"),
                        HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --model_name finqa-dsl-tests/no-such-model-3f9c1: no such local folder, and not in "
                      "the Hugging Face cache (HF_HUB_OFFLINE is set, so the Hub is not asked): download it where "
                      "there is network, or pass a folder"]
    assert "Traceback" not in result.stderr and not (tmp_path / "__output__").exists()
    result = run_script(tmp_path, str(tmp_path / "absent.json"))
    assert result.returncode == 2
    expected = f"error: --config {tmp_path / 'absent.json'}: cannot read it (No such file or directory)."
    assert expected in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_run_that_failed_before_results_does_not_push_the_rerun_to_a_new_folder(in_tmp, tiny_model_dir, capsys):
    broken = in_tmp / "broken-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors")  # passes the checks, fails to load
    with pytest.raises(Exception):  # noqa: B017 (whatever safetensors raises)
        driver.main(flags("--model_name", str(broken), "--output_folder", "run"))
    assert sorted(p.name for p in (in_tmp / "__output__" / "run").iterdir()) == [run_files.ARGS]
    assert driver.main(flags("--model_name", str(tiny_model_dir), "--output_folder", "run")) == 0
    assert sorted(p.name for p in (in_tmp / "__output__").iterdir()) == ["run"]
    args = json.loads((in_tmp / "__output__" / "run" / run_files.ARGS).read_text())
    assert args["model_name"] == str(tiny_model_dir)


@pytest.mark.slow
def test_resume_keeps_a_complete_last_line_and_reports_over_all_rows(in_tmp, tiny_model_dir, caplog):
    run = flags("--model_name", str(tiny_model_dir), "--output_folder", "zs")
    assert driver.main(run) == 0
    folder = in_tmp / "__output__" / "zs"
    complete = (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True)
    # The crash came after the third line but before its newline, and before timing.json.
    (folder / run_files.TEST_PREDICTIONS).write_text("".join(complete[:2]) + complete[2].rstrip("\n"))
    (folder / run_files.TIMING).unlink()
    # ...and its args.json was written by an earlier version, before these flags existed (their defaults are kept).
    older = {key: value for key, value in json.loads((folder / run_files.ARGS).read_text()).items()
             if key not in ("table_format", "num_samples", "logging_first_step")}
    (folder / run_files.ARGS).write_text(json.dumps(older))
    with caplog.at_level(logging.INFO):
        assert driver.main(run) == 0
    assert "Resuming test inference: 3 of 4 examples already in" in caplog.text
    assert sorted(p.name for p in (in_tmp / "__output__").iterdir()) == ["zs"]
    resumed = (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True)
    assert resumed[:3] == complete[:3] and len(resumed) == 4
    rows = [json.loads(line) for line in resumed]
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    assert (metrics["n"], metrics["inference_examples_resumed"], metrics["inference_examples_generated"]) == (4, 3, 1)
    assert metrics["inference_new_tokens"] == sum(row["new_tokens"] for row in rows)
    assert metrics["inference_session_new_tokens"] == rows[3]["new_tokens"]
    assert metrics["inference_total_seconds"] == pytest.approx(
        sum(row["share_ms"] for row in rows) / 1000)
    assert metrics["inference_session_seconds"] < metrics["inference_total_seconds"] + 5
    latencies = [json.loads(line) for line in (folder / run_files.TEST_LATENCIES).read_text().splitlines()]
    assert [row["latency_ms"] for row in latencies] == [row["latency_ms"] for row in rows]


def test_a_corrupt_middle_line_is_one_line_before_the_model_loads(in_tmp, tiny_model_dir, capsys, monkeypatch):
    run = flags("--model_name", str(tiny_model_dir), "--output_folder", "zs")
    assert driver.main(run) == 0
    folder = in_tmp / "__output__" / "zs"
    lines = (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True)
    (folder / run_files.TEST_PREDICTIONS).write_text(lines[0] + '{"id": "x", "generat\n' + lines[2])
    (folder / run_files.TIMING).unlink()
    capsys.readouterr()
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    assert driver.main(run) == 2
    predictions = Path("__output__", "zs", run_files.TEST_PREDICTIONS)  # as the run names it
    assert error_line(capsys).startswith(f"error: {predictions}: line 2: invalid JSON at column 13")
    # Rows of another test set are refused the same way.
    (folder / run_files.TEST_PREDICTIONS).write_text(lines[0].replace(json.loads(lines[0])["id"], "other-id"))
    assert driver.main(run) == 2
    assert "row(s) of examples this run does not have (first: id other-id)" in error_line(capsys)


def parrot_model(folder: Path, text: str) -> Path:
    """A real one-layer Llama (the default model's tokenizer) whose weights are set so that greedy decoding
    writes ``text`` after any chat prompt: attention and MLP add nothing, so each next token depends on the
    current one only, and the embeddings and output layer chain prompt end -> text -> end of turn."""
    import torch

    tokenizer = real_tokenizer("llama")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False,
                                           add_generation_prompt=True)
    chain = [tokenizer(prompt, add_special_tokens=False)["input_ids"][-1],
             *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    assert len(set(chain)) == len(chain), "every token of the chain must have one successor"
    model = tiny_model("llama", tokenizer, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.model.norm.weight.fill_(1.0)
        for i, (token, following) in enumerate(itertools.pairwise(chain)):
            model.model.embed_tokens.weight[token, i] = 1.0
            model.lm_head.weight[following, i] = 10.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("target_field", "text", "correct"), [
    ("program", "divide(18, 4)", {"execution_correct": 1, "program_correct": 1}),
    ("numerical", "4.5", {"answer_correct_strict": 1, "answer_correct_tolerant": 1}),
    ("answer", "4.5", {"answer_correct_strict": 1, "answer_correct_tolerant": 1}),
    ("code", "ans=18/4", {"execution_correct": 1, "answer_correct_tolerant": 1, "answer_correct_abs_1e3": 1}),
])
def test_rescoring_a_run_with_no_flag_reproduces_its_test_metrics(in_tmp, capsys, target_field, text, correct):
    records = sample_records(4)
    records[0]["qa"].update(program="divide(18, 4)", exe_ans=4.5, answer="4.5")  # what the model writes
    write(in_tmp / "test.json", records)
    model = parrot_model(in_tmp / "parrot", text)
    assert driver.main(["--model_name", str(model), "--test_file", "test.json", "--target_field", target_field,
                        "--do_test", "--generation_max_new_tokens", "16", "--report_to", "none",
                        "--output_folder", "run"]) == 0
    folder = in_tmp / "__output__" / "run"
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    assert {key: metrics[key] for key in correct} == correct and metrics["n"] == 4
    capsys.readouterr()
    os.chdir(folder)  # not where the run started: its relative test_file is found from the run folder
    assert score_predictions.main([str(folder / run_files.TEST_PREDICTIONS)]) == 0
    rescored = json.loads(capsys.readouterr().out)
    scoring_keys = get_target(target_field).summarize([]).keys()
    assert {key: rescored[key] for key in scoring_keys} == {key: metrics[key] for key in scoring_keys}
    assert (rescored["n_left_out"], rescored["n_duplicate_ids"], rescored["prediction_field"]) == (0, 0, "generation")


def test_a_folder_holding_only_its_args_is_reused_whatever_they_were(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write(folder / run_files.ARGS, {"model_name": "wrong"})
    (folder / run_files.CHECKPOINTS).mkdir()  # an empty folder is no result
    assert resolve_run_folder(tmp_path, "run", {"model_name": "right"}) == folder
    write(folder / run_files.TEST_PREDICTIONS, "")  # a (partial) result: only the same arguments resume here
    assert resolve_run_folder(tmp_path, "run", {"model_name": "right"}) == tmp_path / "run--2"
    assert resolve_run_folder(tmp_path, "run", {"model_name": "wrong"}) == folder
    # A flag the recorded run predates matches only at its default.
    assert resolve_run_folder(tmp_path, "run", {"model_name": "wrong", "k": 0}, {"k": 0}) == folder
    assert resolve_run_folder(tmp_path, "run", {"model_name": "wrong", "k": 4}, {"k": 0}) == tmp_path / "run--2"
    write(folder / run_files.TIMING, {})  # finished: never reused
    assert resolve_run_folder(tmp_path, "run", {"model_name": "wrong"}) == tmp_path / "run--2"
