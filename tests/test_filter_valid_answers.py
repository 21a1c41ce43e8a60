"""scripts/filter_valid_answers.py: the tolerant match, the reasons counted, kept and dropped rows on disk."""

from __future__ import annotations

import csv
import json

import pytest

from finqa_dsl.distill.filtering import answer_matches, answer_matches_within_abs_1e3
from scripts import filter_valid_answers

COLUMNS = ["id", "prompt", "generated_code", "actual_answer", "expected_answer", "failure_reason",
           "failure_detail", "teacher_error", "prompt_tokens", "completion_tokens"]


@pytest.mark.parametrize(("actual", "expected", "ours", "abs_1e3"), [
    ("0.0322", "0.03221", True, True),
    ("94.0", "94", True, True),
    ("1000000.5", "1000000", True, False),  # relative 1e-3 vs the study's absolute 1e-3
    ("0.0504", "0.05", False, True),  # the study's absolute rule is loose for small fractions
    ("0.0001234", "0.00012", True, True),  # exe_ans is rounded to 5 decimals: official rounding matches
    ("yes", "yes", True, True),
    ("True", "yes", True, True),
    ("False", "yes", False, False),
    ("14.5", "0.145", False, False),
    ("", "3", False, False),
])
def test_matching_rules(actual, expected, ours, abs_1e3):
    assert answer_matches(actual, expected) is ours
    assert answer_matches_within_abs_1e3(actual, expected) is abs_1e3


def _write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in COLUMNS})


def test_rows_are_kept_or_dropped_with_their_reason(tmp_path, capsys):
    rows = [
        {"id": "good", "generated_code": "a = 3\nans = a / 4", "actual_answer": "0.75", "expected_answer": "0.75",
         "prompt": "###Passage\n| x | 3 |, \"quoted\"\n###Python\n"},
        {"id": "wrong", "generated_code": "ans = 1", "actual_answer": "1.0", "expected_answer": "2"},
        {"id": "nocode", "failure_reason": "no_code", "expected_answer": "2"},
        {"id": "boom", "generated_code": "ans = 1/0", "failure_reason": "exception",
         "failure_detail": "ZeroDivisionError", "expected_answer": "2"},
        {"id": "slow", "generated_code": "while True: pass", "failure_reason": "timeout", "expected_answer": "2"},
        {"id": "noans", "generated_code": "x = 1", "failure_reason": "no_ans", "expected_answer": "2"},
        {"id": "syntax", "generated_code": "ans = (", "failure_reason": "syntax_error", "expected_answer": "2"},
        {"id": "lost", "teacher_error": "http_500", "expected_answer": "2"},
    ]
    source = tmp_path / "teacher.csv"
    _write(source, rows)
    assert filter_valid_answers.main([str(source), "--output_file", str(tmp_path / "kept.csv")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 8 and summary["kept"] == 1 and summary["kept_by_abs_1e3"] == 1
    assert summary["dropped"] == {"exception": 1, "no_ans": 1, "no_code": 1, "syntax_error": 1, "teacher_error": 1,
                                  "timeout": 1, "wrong_value": 1}
    with open(tmp_path / "kept.csv", encoding="utf-8", newline="") as handle:
        kept = list(csv.DictReader(handle))
    assert [row["id"] for row in kept] == ["good"] and kept[0]["prompt"] == rows[0]["prompt"]
    with open(tmp_path / "kept.dropped.csv", encoding="utf-8", newline="") as handle:
        dropped = {row["id"]: row["drop_reason"] for row in csv.DictReader(handle)}
    assert dropped == {"wrong": "wrong_value", "nocode": "no_code", "boom": "exception", "slow": "timeout",
                       "noans": "no_ans", "syntax": "syntax_error", "lost": "teacher_error"}


def test_a_csv_that_is_not_a_teacher_csv_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("id,question\na,b\n", encoding="utf-8")
    assert filter_valid_answers.main([str(tmp_path / "x.csv"), "--output_file", str(tmp_path / "k.csv")]) == 2
    assert "missing column(s) prompt, generated_code, actual_answer" in capsys.readouterr().err
