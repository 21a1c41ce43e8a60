"""The Python-code target end to end: code targets (teacher CSV or transpiled gold), code prompts, generations
run in the sandbox and scored three ways, zero-/few-shot/fine-tuned evaluation as flags of one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLE, assert_scored_predictions

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.metrics import WRONG_VALUE, score_code_prediction
from finqa_dsl.core.python_code import NO_CODE, CodeExecution, fenced
from finqa_dsl.runs import files as run_files
from finqa_dsl.sandbox import Reason, Sandbox
from finqa_dsl.sandbox.generations import execute_generations
from scripts import filter_valid_answers, generate_teacher_code
from scripts import finetune as driver


def example(exe_ans):
    (first,) = load_examples(SAMPLE / "test.json")[:1]
    return first.__class__(**{**first.__dict__, "exe_ans": exe_ans})


@pytest.mark.parametrize(("execution", "exe_ans", "official", "tolerant", "within_abs_1e3"), [
    (CodeExecution("ans = 0.0163934", 0.0163934), 0.01639, True, True, True),
    (CodeExecution("ans = 0.0164", 0.0164), 0.01639, False, True, True),  # within 1e-3 relative and absolute
    (CodeExecution("ans = 1639.34", 1639.34), 1.63934, False, False, True),  # the study's /1000 rescue
    (CodeExecution("ans = 5 > 3", "yes"), "yes", True, True, True),
    (CodeExecution("ans = 'No'", "No"), "no", False, True, True),
    (CodeExecution("ans = 1/0", None, "exception", "ZeroDivisionError"), 1.0, False, False, False),
    (CodeExecution(None), 1.0, False, False, False),
])
def test_code_predictions_are_scored_three_ways(execution, exe_ans, official, tolerant, within_abs_1e3):
    row = score_code_prediction(execution, example(exe_ans))
    assert (row["execution_correct"], row["answer_correct_tolerant"], row["answer_correct_abs_1e3"]) == \
        (official, tolerant, within_abs_1e3)
    expected_reason = NO_CODE if execution.code is None else execution.reason or (None if official else "wrong_value")
    assert row["failure_reason"] == expected_reason


def run_flags(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    return ["--model_name", str(model), "--target_field", "code", "--test_file", str(SAMPLE / "test.json"),
            "--train_file", str(SAMPLE / "train.json"), "--max_train_samples", "8", "--max_test_samples", "4",
            "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--generation_max_new_tokens", "16",
            "--inference_batch_size", "2", "--report_to", "none", "--max_seq_length", "1536", *extra]


@pytest.mark.slow
def test_fine_tuning_on_a_filtered_teacher_csv_runs_code_in_the_sandbox(in_tmp, tiny_model_dir, capsys):
    teacher = in_tmp / "teacher" / "train.csv"
    assert generate_teacher_code.main([str(SAMPLE / "train.json"), "--output_file", str(teacher), "--teacher",
                                       "gold-program", "--max_examples", "8"]) == 0
    assert filter_valid_answers.main([str(teacher), "--output_file", str(in_tmp / "filtered.csv")]) == 0
    capsys.readouterr()
    flags = run_flags(in_tmp, tiny_model_dir, "--train_file", str(in_tmp / "filtered.csv"), "--peft", "lora",
                      "--do_train", "--do_test", "--eval_type", "fine-tuned", "--output_folder", "ft")
    assert driver.main(flags) == 0
    folder = in_tmp / "__output__" / "ft"
    rows, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", "code", n=4)
    assert metrics["eval_type"] == "fine-tuned"
    assert sum(metrics["execution_errors"].values()) + metrics["execution_correct"] <= 4
    assert all(row["target"].startswith("```python\n") and "ans = " in row["target"] for row in rows)
    # Each row holds what its generation's code gives when run again: value or error, and the scores of that.
    examples = {example.id: example for example in load_examples(SAMPLE / "test.json")}
    with Sandbox() as sandbox:
        executions = execute_generations(sandbox, [row["generation"] for row in rows])
    for row, execution in zip(rows, executions, strict=True):
        expected = json.loads(json.dumps(score_code_prediction(execution, examples[row["id"]])))
        assert {key: row[key] for key in expected} == expected, row["id"]
        assert row["failure_reason"] in (None, WRONG_VALUE, NO_CODE, *(str(reason) for reason in Reason))
    trained = json.loads((folder / run_files.TRAIN_METRICS).read_text())
    assert trained["train_encoding"]["kept"] == 8


def test_few_shot_code_prompts_show_k_solved_examples_in_code(in_tmp, tiny_model_dir):
    assert driver.main(run_flags(in_tmp, tiny_model_dir, "--do_test", "--eval_type", "few-shot",
                                 "--max_test_samples", "2", "--generation_max_new_tokens", "4",
                                 "--output_folder", "fs")) == 0
    folder = in_tmp / "__output__" / "fs"
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    assert (metrics["eval_type"], metrics["few_shot_k"]) == ("few-shot", 4)
    row = json.loads((folder / run_files.TEST_PREDICTIONS).read_text().splitlines()[0])
    assert row["prompt"].count("```python\n") == 4 and "`ans`" in row["prompt"]
    train = load_examples(SAMPLE / "train.json")
    assert sum(fenced(code) in row["prompt"] for code in _transpiled(train)) == 4


def _transpiled(examples):
    from finqa_dsl.core.gold_transpiler import TranspileError, transpile

    for gold in examples:
        try:
            yield transpile(gold)
        except TranspileError:
            continue


@pytest.mark.parametrize(("extra", "message"), [
    (("--eval_type", "zero-shot", "--do_train"), "--eval_type zero-shot evaluates an untrained model"),
    (("--eval_type", "fine-tuned", "--few_shot_k", "2"), "--eval_type fine-tuned shows no solved examples"),
    (("--eval_type", "two-shot"), "--eval_type 'two-shot' is not one of"),
    (("--inference_backend", "vllm"), "--inference_backend vllm needs"),
])
def test_inconsistent_evaluation_flags_are_one_line(in_tmp, tiny_model_dir, capsys, extra, message):
    assert driver.main(run_flags(in_tmp, tiny_model_dir, "--do_test", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (in_tmp / "__output__").exists()
