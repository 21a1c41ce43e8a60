"""Keep the teacher rows whose executed answer matches the label; count why the others were dropped.

The match is the project's tolerant answer match (:func:`finqa_dsl.core.metrics.score_answer_prediction`:
numbers within a relative 1e-3, yes/no case-insensitively, True/False as yes/no). The PoT-distillation study's own rule
(absolute difference < 1e-3, else case-insensitive string equality) is counted beside it for comparison.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass

from finqa_dsl.core.data import DatasetError
from finqa_dsl.core.io import atomic_write_text
from finqa_dsl.core.metrics import answer_tolerant_match, matches_within_abs_1e3

WRONG_VALUE = "wrong_value"
TEACHER_ERROR = "teacher_error"
# The study's teacher CSV has these four columns only (this project's adds id, failure_reason, ...); the filtered
# CSV keeps the input's columns, so the study's shape stays the study's.
REQUIRED = ("prompt", "generated_code", "actual_answer", "expected_answer")


@dataclass(frozen=True)
class FilterSummary:
    rows: int
    kept: int
    dropped: dict[str, int]  # reason -> count
    kept_by_abs_1e3: int  # what the study's own rule, |a - e| < 1e-3, would have kept

    def as_dict(self) -> dict:
        return {"rows": self.rows, "kept": self.kept, "dropped": self.dropped,
                "kept_by_abs_1e3": self.kept_by_abs_1e3}


def answer_matches(actual: str, expected: str) -> bool:
    """The executed ``actual`` (as the teacher CSV writes it) matches the label ``expected``."""
    gold = _number(expected)
    return bool(actual) and answer_tolerant_match(actual, expected if gold is None else gold)


def answer_matches_within_abs_1e3(actual: str, expected: str) -> bool:
    """The study's filter: |actual - expected| < 1e-3, else case-insensitive string equality."""
    return bool(actual) and matches_within_abs_1e3(actual, expected)


def drop_reason(row: dict[str, str]) -> str | None:
    """Why a teacher row is dropped (None: kept)."""
    if row.get("teacher_error"):
        return TEACHER_ERROR
    if row.get("failure_reason"):
        return row["failure_reason"]
    return None if answer_matches(row["actual_answer"], row["expected_answer"]) else WRONG_VALUE


def filter_rows(rows: list[dict[str, str]]) -> tuple[list[dict], list[dict], FilterSummary]:
    """``(kept, dropped, summary)``; each dropped row gets a ``drop_reason`` column."""
    kept, dropped = [], []
    for row in rows:
        reason = drop_reason(row)
        (kept if reason is None else dropped).append(row if reason is None else {**row, "drop_reason": reason})
    kept_within = sum(not row.get("teacher_error") and not row.get("failure_reason")
                      and answer_matches_within_abs_1e3(row["actual_answer"], row["expected_answer"]) for row in rows)
    reasons = Counter(row["drop_reason"] for row in dropped)
    return kept, dropped, FilterSummary(len(rows), len(kept), dict(sorted(reasons.items())), kept_within)


def read_teacher_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of a teacher CSV; :class:`DatasetError` naming the file when columns are missing."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in REQUIRED if column not in (reader.fieldnames or ())]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}: not a teacher CSV (from "
                               "scripts/generate_teacher_code.py, or the study's)")
        return list(reader.fieldnames), list(reader)


def write_rows(path: str | os.PathLike, columns: list[str], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")  # CRLF: a lone CR stays quoted
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None

