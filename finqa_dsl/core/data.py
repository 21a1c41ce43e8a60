"""Load FinQA-format datasets (official ``.json`` list or ``.jsonl``) into typed, validated records."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finqa_dsl.core.errors import DatasetError, record_frame

CODE_COLUMN = "generated_code"  # a teacher CSV's code
GOLD_KEY = re.compile(r"(text|table)_(\d+)")
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class Example:
    """One FinQA example; ``raw`` is the whole original record (unknown fields kept)."""

    id: str
    question: str
    program: str
    exe_ans: float | str  # a float, or "yes"/"no"
    answer: str | None
    pre_text: tuple[str, ...]
    post_text: tuple[str, ...]
    table: tuple[tuple[str, ...], ...]  # the normalised `table` field, row 0 = header
    gold_inds: dict[str, str] | None  # "text_N" (pre_text + post_text) / "table_N" -> evidence text
    raw: dict = field(repr=False)
    source: str | None = field(default=None, compare=False)  # the file it was loaded from, for messages


def load_examples(path: str | os.PathLike, *, bad_program: str = "skip") -> list[Example]:
    """Load and validate every record of ``path``; duplicate ids are an error. ``bad_program`` says what a row
    of the PoT-distillation study's CSV whose program does not execute does: ``skip`` (logged, counted) or
    ``refuse`` (see :func:`finqa_dsl.core.finqa_csv.read_csv_records`)."""
    return examples_from_records(read_records(path, bad_program=bad_program), path)


def examples_from_records(records: list[Any], path: str | os.PathLike) -> list[Example]:
    """Validate FinQA-format records read from ``path`` (named in errors) into examples; duplicate ids are
    an error."""
    path = Path(path)
    examples = [_parse_record(record, index, path) for index, record in enumerate(records)]
    first_index: dict[str, int] = {}
    for index, example in enumerate(examples):
        if example.id in first_index:
            raise DatasetError.for_field(
                path, example.id, "id", f"a unique id, but record #{first_index[example.id]} has it too"
            )
        first_index[example.id] = index
    return examples


def read_records(path: str | os.PathLike, *, bad_program: str = "skip") -> list[Any]:
    """The raw records of a FinQA ``.json`` list, ``.jsonl`` or ``.csv`` (:mod:`finqa_dsl.core.finqa_csv`) file,
    unvalidated (errors name the file and line)."""
    path = Path(path)
    if path.suffix == ".csv":
        from finqa_dsl.core.finqa_csv import read_csv_records  # it builds on this module

        return read_csv_records(path, bad_program=bad_program)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text ({error})") from None
    if not text.strip():
        raise DatasetError(f"{path}: empty file (expected FinQA records: a JSON list, or JSON lines)")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}: line {number}: invalid JSON ({error.msg})") from None
        return records
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg})"
        ) from None
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of FinQA records, got {type(records).__name__}")
    return records


def _parse_record(record: Any, index: int, path: Path) -> Example:
    example_id, qa, fail = record_frame(record, index, path)
    if not isinstance(qa.get("question"), str) or not qa["question"].strip():
        raise fail("qa.question", "a non-empty string")
    # A teacher row of the study's CSV has code and no program: its code is the target.
    has_code = isinstance(record.get(CODE_COLUMN), str) and bool(record[CODE_COLUMN].strip())
    if not isinstance(qa.get("program"), str) or not (qa["program"].strip() or has_code):
        raise fail("qa.program", "a non-empty string (or teacher code in 'generated_code')")
    answer = qa.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise fail("qa.answer", "a string when present")
    pre_text = _strings(record, "pre_text", fail)
    post_text = _strings(record, "post_text", fail)
    table = _table(record.get("table"), fail)
    return Example(
        id=example_id,
        question=qa["question"],
        program=qa["program"],
        exe_ans=_exe_ans(qa.get("exe_ans"), fail),
        answer=answer,
        pre_text=pre_text,
        post_text=post_text,
        table=table,
        gold_inds=_gold_inds(qa.get("gold_inds"), len(pre_text) + len(post_text), len(table), fail),
        raw=record,
        source=str(path),
    )


def _strings(record: dict, name: str, fail) -> tuple[str, ...]:
    value = record.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise fail(name, "a list of strings")
    return tuple(value)


def _table(value: Any, fail) -> tuple[tuple[str, ...], ...]:
    expected = "a list of rows, each a list of strings"
    if not isinstance(value, list):
        raise fail("table", expected)
    rows = []
    for number, row in enumerate(value):
        if not isinstance(row, list) or not all(isinstance(cell, str) for cell in row):
            raise fail("table", f"{expected} (row {number} is not)")
        rows.append(tuple(row))
    return tuple(rows)


def _exe_ans(value: Any, fail) -> float | str:
    if value in YES_NO:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise fail("qa.exe_ans", f"a finite number or 'yes'/'no', got {value!r}")


def _gold_inds(value: Any, n_text: int, n_rows: int, fail) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("qa.gold_inds", "an object mapping 'text_N'/'table_N' to strings")
    for key, text in value.items():
        match = GOLD_KEY.fullmatch(key)
        if match is None or not isinstance(text, str):
            raise fail("qa.gold_inds", f"'text_N'/'table_N' keys with string values, got key {key!r}")
        limit = n_text if match[1] == "text" else n_rows
        if int(match[2]) >= limit:
            raise fail("qa.gold_inds", f"key {key!r} within the record's {limit} {match[1]} entries")
    return dict(value)
