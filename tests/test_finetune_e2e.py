"""End-to-end runs of scripts/finetune.py on CPU with a tiny random model and the real default tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path
from finqa_dsl.runs import files as run_files
from scripts import finetune as driver

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "FinQA" / "sample"
PREDICTION_FIELDS = {"id", "question", "prompt", "generation", "gold_program", "latency_ms", "latency_mode",
                     "failure_reason"}



@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the default model's real tokenizer and chat template."""
    try:
        tokenizer_source = default_model_path()
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model tokenizer unavailable: {error}")
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def finetune(tmp_path: Path, *flags: str) -> int:
    """Run the driver in ``tmp_path`` (its __output__ goes there) on the sample data."""
    data = ["--train_file", str(SAMPLE / "train.json"), "--eval_file", str(SAMPLE / "dev.json"),
            "--test_file", str(SAMPLE / "test.json"), "--max_train_samples", "8", "--max_eval_samples", "4",
            "--max_test_samples", "4", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
            "--num_train_epochs", "1", "--logging_steps", "1", "--generation_max_new_tokens", "8",
            "--inference_batch_size", "2", "--max_seq_length", "1024", "--report_to", "none"]
    return driver.main([*data, *flags])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_folder(root: Path, name: str) -> Path:
    return root / "__output__" / name


@pytest.mark.parametrize("input_mode", ["gold", "all", "noisy_gold"])
@pytest.mark.parametrize("target_field", ["program", "numerical", "answer"])
@pytest.mark.parametrize("peft", ["none", "lora", "qlora"])
def test_train_and_test_write_every_output(in_tmp, tiny_model_dir, peft, target_field, input_mode):
    assert finetune(in_tmp, "--model_name", str(tiny_model_dir), "--peft", peft, "--target_field", target_field,
                    "--input_mode", input_mode, "--do_train", "--do_test", "--output_folder", "run") == 0
    folder = run_folder(in_tmp, "run")
    args = json.loads((folder / run_files.ARGS).read_text())
    assert (args["peft"], args["target_field"], args["input_mode"]) == (peft, target_field, input_mode)
    assert (folder / run_files.FINAL_MODEL).is_dir()
    assert (folder / run_files.TRAIN_LOSS_LOG).read_text().strip()
    trained = json.loads((folder / run_files.TRAIN_METRICS).read_text())
    assert trained["train_encoding"]["kept"] == 8 and trained["train_prompt_truncation"]["examples"] == 8
    logged = [json.loads(line) for line in (folder / run_files.METRICS).read_text().splitlines()]
    assert any("loss" in row for row in logged)
    predictions = [json.loads(line) for line in (folder / run_files.TEST_PREDICTIONS).read_text().splitlines()]
    assert len(predictions) == 4 and all(row.keys() >= PREDICTION_FIELDS for row in predictions)
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    assert metrics["n"] == 4
    headline = ["execution_accuracy", "program_accuracy"] if target_field == "program" else \
        ["answer_accuracy_strict", "answer_accuracy_tolerant"]
    assert all(0.0 <= metrics[name] <= 1.0 for name in headline)
    assert {f"inference_latency_ms_{k}" for k in ("avg", "p50", "p90", "p95", "p99")} <= metrics.keys()
    latencies = (folder / run_files.TEST_LATENCIES).read_text().splitlines()
    assert len(latencies) == 4
    timing = json.loads((folder / run_files.TIMING).read_text())
    assert timing["train_duration_seconds"] > 0 and timing["test_inference_duration_seconds"] > 0
    assert timing["peak_host_memory_bytes"] > 0
    assert (folder / run_files.LOSS_PLOT).stat().st_size > 0
    assert (folder / run_files.LATENCY_PLOT).stat().st_size > 0


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
    assert "eval_loss" in (run_folder(in_tmp, "reloaded") / run_files.EVAL_LOSS_LOG).read_text() or \
        (run_folder(in_tmp, "reloaded") / run_files.EVAL_LOSS_LOG).read_text().strip()


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
    assert json.loads((folder / run_files.TEST_METRICS).read_text())["inference_examples_resumed"] == 2
    # The folder is finished now: the same command goes to a new folder instead of overwriting it.
    assert finetune(in_tmp, *flags) == 0
    assert run_folder(in_tmp, "zs--2").is_dir()
    assert (folder / run_files.TEST_PREDICTIONS).read_text().splitlines(keepends=True) == resumed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--do_test", "--input_mode", "golden"), "--input_mode 'golden' is not one of"),
        (("--do_test", "--target_field", "code"), "--target_field 'code' is not one of"),
        (("--do_test", "--peft", "dora"), "--peft 'dora' is not one of"),
        ((), "Nothing to do"),
        (("--do_test", "--generation_temperature", "0.7"), "only apply with --generation_do_sample"),
        (("--do_test", "--test_file", "FinQA/dataset/test.json"), "scripts/download_finqa.py"),
        (("--do_test", "--bf16", "true"), "bf16"),
        (("--do_test", "--inference_engine", "continuous", "--generation_num_beams", "2"),
         "--inference_engine: inference engine 'continuous' does not do beam search"),
        (("--do_test", "--inference_engine", "paged"), "--inference_engine: inference engine 'paged' is not one of"),
    ],
)
def test_bad_flags_fail_before_any_model_loads(in_tmp, capsys, flags, message):
    # A model name that cannot load proves that the error comes first.
    assert finetune(in_tmp, "--model_name", "/nonexistent/model", *flags) == 2
    assert message in capsys.readouterr().err


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
        assert key in logged
