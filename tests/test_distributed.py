"""The driver under ``torchrun`` (2 processes, gloo, CPU) on a tiny random Llama with the default model's tokenizer:
one run folder, every test example predicted once, the metrics of one process; and the shard files behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT, SAMPLE, assert_scored_predictions, save_tiny_llama

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.io import read_jsonl_tolerant
from finqa_dsl.inference.predictions_file import finished_ids, merge_shards, shard_path
from finqa_dsl.runs import files as run_files

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
FLAGS = ["--train_file", str(SAMPLE / "train.json"), "--test_file", str(SAMPLE / "test.json"),
         "--max_train_samples", "8", "--per_device_train_batch_size", "2", "--num_train_epochs", "1",
         "--logging_steps", "1", "--generation_max_new_tokens", "8", "--inference_batch_size", "1",
         "--report_to", "none"]
CPU = ["--use_cpu"]  # without a GPU, TrainingArguments joins the processes into a gloo group only with it


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, default_tokenizer) -> Path:
    """A 2-layer random Llama (hidden sizes multiples of 64) with the default model's real tokenizer; weights
    drawn wide enough that greedy decoding writes varied text, so comparing generations means something."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-64"), default_tokenizer, 64, 128,
                           initializer_range=0.2)


def finetune(cwd: Path, *flags: str, processes: int = 2) -> subprocess.CompletedProcess:
    """scripts/finetune.py as a real subprocess in ``cwd`` (its __output__ goes there): under torchrun with
    ``processes`` > 1, else plain; one OpenMP thread per process, so two processes fit two cores."""
    launcher = TORCHRUN if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, str(REPO_ROOT / "scripts" / "finetune.py"), *FLAGS, *flags], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)


def succeeded(result: subprocess.CompletedProcess) -> bool:
    if result.returncode != 0:
        print(result.stderr[-6000:])
    return result.returncode == 0


def first_test_ids(n: int) -> list[str]:
    return [example.id for example in load_examples(SAMPLE / "test.json")[:n]]


def predictions(folder: Path) -> list[dict]:
    return read_jsonl_tolerant(folder / run_files.TEST_PREDICTIONS)


def leftover_shards(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if ".rank" in path.name]


@pytest.mark.slow
def test_torchrun_train_and_test_give_one_folder_each_example_once_and_the_metrics_of_one_process(
        tmp_path, tiny_model_dir):
    result = finetune(tmp_path, *CPU, "--model_name", str(tiny_model_dir), "--do_train", "--do_test",
                      "--max_test_samples", "5", "--output_folder", "ddp")
    assert succeeded(result)
    assert [p.name for p in (tmp_path / "__output__").iterdir()] == ["ddp"], "one folder, no ddp--2"
    folder = tmp_path / "__output__" / "ddp"
    assert result.stdout.splitlines()[-1] == str(Path("__output__") / "ddp")
    # DDP really split the training data: 8 examples, 2 per device, 2 processes -> 2 optimizer steps, not 4.
    logged = read_jsonl_tolerant(folder / run_files.METRICS)
    assert [row["step"] for row in logged if "loss" in row] == [1, 2]
    assert json.loads((folder / run_files.TRAIN_METRICS).read_text())["train_encoding"]["kept"] == 8
    # Test inference: 5 examples split 3 + 2, merged in test order, each once, no shard left behind.
    rows = predictions(folder)
    assert [row["id"] for row in rows] == first_test_ids(5)
    assert not leftover_shards(folder)
    _, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", "program", n=5)
    assert metrics["inference_examples_resumed"] == 0
    assert len((folder / run_files.TEST_LATENCIES).read_text().splitlines()) == 5
    timing = json.loads((folder / run_files.TIMING).read_text())
    assert timing["world_size"] == 2 and timing["test_inference_duration_seconds"] > 0
    # Logs follow the rank: the main process at INFO, the other one at WARNING.
    assert "INFO [rank 0] finqa_dsl.driver.pipeline: Run folder" in result.stderr
    assert "INFO [rank 1]" not in result.stderr

    # One process, --do_test on the model the torchrun run saved: the same predictions and metrics.
    single = finetune(tmp_path, "--model_name", str(folder / run_files.FINAL_MODEL), "--do_test",
                      "--max_test_samples", "5", "--output_folder", "single", processes=1)
    assert succeeded(single)
    reference_folder = tmp_path / "__output__" / "single"
    reference = json.loads((reference_folder / run_files.TEST_METRICS).read_text())
    headline = ("n", "execution_correct", "program_correct", "execution_accuracy", "program_accuracy",
                "execution_errors", "inference_new_tokens")  # the tokens: no example was generated twice
    assert {k: metrics[k] for k in headline} == {k: reference[k] for k in headline}
    assert any(row["generation"] for row in rows), "the tiny model writes text: the comparison is not vacuous"
    assert {row["id"]: row["generation"] for row in rows} == \
           {row["id"]: row["generation"] for row in predictions(reference_folder)}


@pytest.mark.slow
def test_interrupted_torchrun_test_inference_resumes_without_duplicates(tmp_path, tiny_model_dir):
    flags = (*CPU, "--model_name", str(tiny_model_dir), "--do_test", "--max_test_samples", "6",
             "--output_folder", "zs")
    assert succeeded(finetune(tmp_path, *flags))
    folder = tmp_path / "__output__" / "zs"
    complete = predictions(folder)
    assert [row["id"] for row in complete] == first_test_ids(6)

    def crash_after_three_predictions() -> None:
        """What a 2-process run killed mid-test leaves: shards (one with a torn last line), no merged file and
        no timing.json (the run never finished)."""
        for name in (run_files.TEST_PREDICTIONS, run_files.TEST_METRICS, run_files.TIMING):
            (folder / name).unlink()
        lines = [json.dumps(row) + "\n" for row in complete]
        shard_path(folder / run_files.TEST_PREDICTIONS, 0, 2).write_text(lines[0] + lines[1] + lines[2][:25])
        shard_path(folder / run_files.TEST_PREDICTIONS, 1, 2).write_text(lines[3])

    for processes in (2, 1):  # resumed under torchrun, then (a second crash) by a single process
        crash_after_three_predictions()
        assert succeeded(finetune(tmp_path, *flags, processes=processes))
        assert [p.name for p in (tmp_path / "__output__").iterdir()] == ["zs"]
        resumed = predictions(folder)
        assert [row["id"] for row in resumed] == first_test_ids(6), "each example once, in test order"
        assert [resumed[i] for i in (0, 1, 3)] == [complete[i] for i in (0, 1, 3)], "finished rows are kept"
        assert [row["generation"] for row in resumed] == [row["generation"] for row in complete]
        assert not leftover_shards(folder)
        assert json.loads((folder / run_files.TEST_METRICS).read_text())["inference_examples_resumed"] == 3


@pytest.mark.slow
def test_torchrun_on_cpu_without_use_cpu_stops_before_any_model_loads(tmp_path):
    result = finetune(tmp_path, "--model_name", "/nonexistent/model", "--do_test", "--output_folder", "x")
    assert result.returncode != 0
    assert "launched as 2 processes" in result.stderr and "add --use_cpu" in result.stderr
    assert not (tmp_path / "__output__").exists()


def test_shards_are_merged_each_example_once_in_record_order_and_removed(tmp_path):
    path = tmp_path / run_files.TEST_PREDICTIONS
    assert shard_path(path, 0, 1) == path  # one process writes the predictions file itself
    records = [SimpleNamespace(id=i) for i in "abcde"]

    def write(file: Path, *rows: dict, torn: str = "") -> None:
        file.write_text("".join(json.dumps(row) + "\n" for row in rows) + torn)

    write(path, {"id": "c", "run": "single"})  # an earlier single-process attempt
    write(shard_path(path, 0, 2), {"id": "a", "run": "2"}, {"id": "b", "run": "2"}, torn='{"id": "e", "ru')
    write(shard_path(path, 1, 3), {"id": "d", "run": "3"}, {"id": "b", "run": "3"})
    assert finished_ids(path) == {"a", "b", "c", "d"}
    merge_shards(path, records)
    assert read_jsonl_tolerant(path) == [{"id": "a", "run": "2"}, {"id": "b", "run": "2"},
                                         {"id": "c", "run": "single"}, {"id": "d", "run": "3"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [run_files.TEST_PREDICTIONS]
