"""The PoT-distillation and crosscoder study's own files, with exactly its columns, through every step: its
six-column FinQA CSV to the teacher, its four-column teacher CSV to the filter, the filtered CSV to fine-tuning
with the code target, and its test CSV as the gold of fine-tuning and of scoring."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import SAMPLE, assert_scored_predictions

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.finqa_csv import STUDY_COLUMNS, STUDY_TEACHER_COLUMNS, record_row
from scripts import filter_valid_answers, generate_teacher_code, score_predictions
from scripts import finetune as driver


def _write(path, columns, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(path):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def study_csv(path, source, n):
    """The study's preprocessed CSV: its six columns and nothing else."""
    rows = [record_row(example.raw, index, source) for index, example in enumerate(load_examples(source)[:n])]
    return _write(path, STUDY_COLUMNS, rows)


@pytest.mark.slow
def test_the_studys_csvs_run_through_teacher_filter_fine_tuning_and_scoring(in_tmp, tiny_model_dir, capsys):
    train, test = study_csv(in_tmp / "train.csv", SAMPLE / "train.json", 8), study_csv(
        in_tmp / "test.csv", SAMPLE / "test.json", 4)
    assert _read(train)[0] == list(STUDY_COLUMNS)

    # teacher: the study's CSV as input
    teacher = in_tmp / "teacher" / "train.csv"
    assert generate_teacher_code.main([str(train), "--output_file", str(teacher), "--teacher", "gold-program",
                                       "--bad_program", "refuse"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 8 and summary["failure_reasons"] == {"ok": 8}
    columns, rows = _read(teacher)
    assert [row["id"] for row in rows] == [f"train-{n}" for n in range(1, 9)]

    # the study's own teacher CSV (its four columns) to the filter: the kept rows keep its shape
    study_teacher = _write(in_tmp / "study_teacher.csv", STUDY_TEACHER_COLUMNS,
                           [*rows, {**rows[0], "actual_answer": "12345", "expected_answer": "7"}])
    filtered = in_tmp / "filtered.csv"
    assert filter_valid_answers.main([str(study_teacher), "--output_file", str(filtered)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["kept"], summary["dropped"]) == (9, 8, {"wrong_value": 1})
    columns, kept = _read(filtered)
    assert columns == list(STUDY_TEACHER_COLUMNS) and len(kept) == 8

    # fine-tuning with the code target on the filtered CSV, tested on the study's test CSV
    flags = ["--model_name", str(tiny_model_dir), "--target_field", "code", "--train_file", str(filtered),
             "--test_file", str(test), "--do_train", "--do_test", "--eval_type", "fine-tuned", "--peft", "lora",
             "--per_device_train_batch_size", "4", "--num_train_epochs", "1", "--generation_max_new_tokens", "16",
             "--inference_batch_size", "2", "--report_to", "none", "--max_seq_length", "1536",
             "--input_mode", "all", "--output_folder", "study"]  # the study's CSVs carry no gold evidence
    assert driver.main(flags) == 0
    folder = in_tmp / "__output__" / "study"
    rows, metrics = assert_scored_predictions(folder, test, "code", n=4)
    assert [row["id"] for row in rows] == [f"test-{n}" for n in range(1, 5)]
    assert all(row["target"].startswith("```python\n") for row in rows)
    trained = json.loads((folder / "train_metrics.json").read_text())
    assert trained["train_encoding"]["kept"] == 8  # every filtered row was a training example
    examples = load_examples(filtered)  # each one's target: the teacher's code
    assert [example.raw["generated_code"] for example in examples] == [row["generated_code"] for row in kept]

    # scoring the predictions again against the study's test CSV gives the run's numbers
    capsys.readouterr()
    predictions = folder / "test_predictions.jsonl"
    assert score_predictions.main([str(predictions), "--gold", str(test), "--target_field", "code"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n"] == 4 and scored["execution_accuracy"] == metrics["execution_accuracy"]


def test_a_study_row_whose_program_does_not_run_is_skipped_or_refused_as_the_user_chooses(in_tmp, tiny_model_dir,
                                                                                         capsys):
    train = study_csv(in_tmp / "train.csv", SAMPLE / "train.json", 4)
    columns, rows = _read(train)
    rows[1]["program"] = "divide(5, 0)"  # row 2: does not execute
    _write(train, columns, rows)
    test = study_csv(in_tmp / "test.csv", SAMPLE / "test.json", 2)
    flags = ["--model_name", str(tiny_model_dir), "--train_file", str(train), "--test_file", str(test),
             "--do_train", "--max_steps", "1", "--report_to", "none", "--input_mode", "all", "--output_folder", "x"]
    assert driver.main([*flags, "--bad_program", "refuse"]) == 2
    error = capsys.readouterr().err
    assert "train.csv" in error and "row 2" in error and "--bad_program skip" in error
    assert not (in_tmp / "__output__").exists()
    assert driver.main([*flags, "--bad_program", "skip"]) == 0
    trained = json.loads((in_tmp / "__output__" / "x" / "train_metrics.json").read_text())
    assert trained["train_encoding"]["kept"] == 3
    predictions = in_tmp / "__output__" / "x" / "test_predictions.jsonl"
    predictions.write_text(json.dumps({"id": "train-2", "generation": "divide(5, 1)"}) + "\n")
    capsys.readouterr()
    assert score_predictions.main([str(predictions), "--gold", str(train), "--bad_program", "refuse"]) == 2
    assert "row 2" in capsys.readouterr().err
    assert score_predictions.main([str(predictions), "--gold", str(train)]) == 0
    assert json.loads(capsys.readouterr().out)["n_left_out"] == 1  # its gold row was skipped


def test_the_program_target_refuses_a_teacher_csv_row_without_a_program(in_tmp, tiny_model_dir, capsys):
    teacher = in_tmp / "teacher.csv"
    train = study_csv(in_tmp / "train.csv", SAMPLE / "train.json", 2)
    assert generate_teacher_code.main([str(train), "--output_file", str(teacher), "--teacher", "gold-program"]) == 0
    _, rows = _read(teacher)
    study_teacher = _write(in_tmp / "study_teacher.csv", STUDY_TEACHER_COLUMNS, rows)
    capsys.readouterr()
    assert driver.main(["--model_name", str(tiny_model_dir), "--train_file", str(study_teacher), "--do_train",
                        "--target_field", "program", "--input_mode", "all", "--report_to", "none"]) == 2
    assert "field 'qa.program'" in capsys.readouterr().err
