"""Every entry point that takes a target, with every target, on the sample data: the driver, side-by-side
inference, re-scoring and run comparison each give the target's own scored fields, with values that agree."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLE, assert_scored_predictions

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.targets import TARGET_FIELDS
from finqa_dsl.runs import files as run_files
from scripts import compare_runs, finetune, inference, score_predictions

# What each target's predictions are scored by (the metric semantics: official execution and program accuracy
# for programs, strict and tolerant matches for answers, executed code for code).
SCORED_FIELDS = {
    "program": {"executed_value", "execution_error", "execution_correct", "program_correct", "failure_reason"},
    "numerical": {"predicted_value", "answer_correct_strict", "answer_correct_tolerant", "failure_reason"},
    "answer": {"predicted_value", "answer_correct_strict", "answer_correct_tolerant", "failure_reason"},
    "code": {"executed_value", "execution_error", "execution_detail", "execution_correct",
             "answer_correct_tolerant", "answer_correct_abs_1e3", "failure_reason"},
}
ACCURACIES = {"program": ("execution_accuracy", "program_accuracy"),
              "numerical": ("answer_accuracy_strict", "answer_accuracy_tolerant"),
              "answer": ("answer_accuracy_strict", "answer_accuracy_tolerant"),
              "code": ("execution_accuracy", "answer_accuracy_tolerant", "answer_accuracy_abs_1e3")}
RIGHT_WHEN = {"program": "execution_correct", "numerical": "answer_correct_tolerant",
              "answer": "answer_correct_tolerant", "code": "execution_correct"}


def test_every_registered_target_is_covered_here():
    assert set(TARGET_FIELDS) == set(SCORED_FIELDS) == set(ACCURACIES) == set(RIGHT_WHEN)


@pytest.mark.parametrize("target_field", TARGET_FIELDS)
def test_each_entry_point_scores_the_target(target_field, in_tmp, tiny_model_dir, tiny_lora_adapter, capsys):
    flags = ["--model_name", str(tiny_model_dir), "--test_file", str(SAMPLE / "test.json"), "--do_test",
             "--max_test_samples", "3", "--generation_max_new_tokens", "8", "--target_field", target_field,
             "--report_to", "none", "--output_folder", target_field]
    assert finetune.main(flags) == 0
    folder = in_tmp / "__output__" / target_field
    rows, metrics = assert_scored_predictions(folder, SAMPLE / "test.json", target_field, n=3)
    assert all(SCORED_FIELDS[target_field] <= row.keys() for row in rows)
    assert all(metrics[name] is not None for name in ACCURACIES[target_field])
    capsys.readouterr()

    assert score_predictions.main([str(folder / run_files.TEST_PREDICTIONS)]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert {key: rescored[key] for key in ("target_field", "n", *ACCURACIES[target_field])} == \
        {key: metrics[key] for key in ("target_field", "n", *ACCURACIES[target_field])}

    assert compare_runs.main([str(folder)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    table = dict(zip(header.split(), row.split(), strict=True))
    assert table["target_field"] == target_field
    assert all(table[name] == f"{metrics[name]:.4f}" for name in ACCURACIES[target_field])

    example = load_examples(SAMPLE / "test.json")[0]
    assert inference.main([str(tiny_lora_adapter), "--test_file", str(SAMPLE / "test.json"), "--id", example.id,
                           "--target_field", target_field, "--max_new_tokens", "8"]) == 0
    side_by_side = json.loads(capsys.readouterr().out)
    assert side_by_side["target_field"] == target_field and side_by_side["gold_exe_ans"] == example.exe_ans
    for side in ("base", "finetuned"):
        assert SCORED_FIELDS[target_field] <= side_by_side[side].keys(), side
        answer = side_by_side[side]
        assert (answer["failure_reason"] is None) == answer[RIGHT_WHEN[target_field]], side
