r"""FinQA as the PoT-distillation study's CSV (one row per example): official-format JSON to CSV, and CSV back to
examples.

Columns (:data:`COLUMNS`): ``id``, then the study's ``pre_text, post_text, table, question, answer, program``,
then ``exe_ans`` and ``gold_inds`` (the evidence annotation as JSON, empty when the record has none; optional
when reading, so the study's own CSVs load too). Cells are rendered as the study renders them, made reversible:

* ``pre_text`` / ``post_text``: the sentences, one per line. The study strips them and drops empty ones; here
  every sentence is kept verbatim, so the ``text_N`` indexes of ``gold_inds`` still point at the same one.
* ``table``: one row per line, cells joined by ``|`` (the study's ``format_table``, without its strip).
* Escapes: a backslash, newline or carriage return inside a sentence or cell is written ``\\``, ``\n``,
  ``\r``, and a ``|`` inside a table cell ``\|``. Of the real FinQA data only 4 sentences need one (a
  Windows path in STT/2006/page_95); 44 hold a ``|``, which needs no escape in a sentence.
* ``answer`` is ``exe_ans`` when the record has one (the study's rule), else ``qa.answer``. ``exe_ans`` is
  Python's shortest ``repr`` of the float (it reads back to the same float) or ``yes``/``no``.
* The CSV layer is RFC 4180 (``csv`` module): CRLF ends a record, and a cell that holds a line break, quote
  or comma is quoted, a ``"`` in it doubled.

Rows whose question or answer is empty are dropped, and their ids are reported. Read back, a row becomes an
official-format record (``qa.answer`` is the ``answer`` cell) validated like a JSON
record. Two edge cases are not reversible: a text list holding one empty sentence reads back as no sentence,
and a table row without cells (which no table operation can use) as a row with one empty cell.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from finqa_dsl.core.dsl import NO, YES, execute
from finqa_dsl.core.errors import DatasetError, record_frame

COLUMNS = ("id", "pre_text", "post_text", "table", "question", "answer", "program", "exe_ans", "gold_inds")
CELL_SEPARATOR = "|"
LINE_SEPARATOR = "\n"
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "|": "\\|"}
_UNESCAPES = {escaped[1]: raw for raw, escaped in _ESCAPES.items()}
_TEXT_SPECIALS = re.compile(r"[\\\n\r]")
_CELL_SPECIALS = re.compile(r"[\\\n\r|]")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


# --- cells -------------------------------------------------------------------------------------------


def render_text(sentences: Sequence[str]) -> str:
    """Sentences as one cell: one per line, escaped."""
    return LINE_SEPARATOR.join(_escape(sentence, _TEXT_SPECIALS) for sentence in sentences)


def parse_text(cell: str) -> list[str]:
    """The sentences of a :func:`render_text` cell."""
    return [_unescape(line) for line in cell.split(LINE_SEPARATOR)] if cell else []


def render_table(table: Sequence[Sequence[str]]) -> str:
    """A table as one cell: one row per line, cells joined by ``|``, escaped."""
    return LINE_SEPARATOR.join(CELL_SEPARATOR.join(_escape(cell, _CELL_SPECIALS) for cell in row) for row in table)


def parse_table(cell: str) -> list[list[str]]:
    """The rows of a :func:`render_table` cell."""
    return [_split_cells(line) for line in cell.split(LINE_SEPARATOR)] if cell else []


def _escape(text: str, specials: re.Pattern) -> str:
    return specials.sub(lambda match: _ESCAPES[match.group()], text)


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPES.get(m.group(1), m.group()), text)


def _split_cells(line: str) -> list[str]:
    """Split on every ``|`` that is not escaped, then unescape each cell."""
    cells, start, index = [], 0, 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        if line[index] == CELL_SEPARATOR:
            cells.append(_unescape(line[start:index]))
            start = index + 1
        index += 1
    cells.append(_unescape(line[start:]))
    return cells


# --- JSON records to rows ----------------------------------------------------------------------------


def record_row(record: Any, index: int, path: str | os.PathLike) -> dict[str, str]:
    """The CSV row of one official-format record; a record without the FinQA shape is a DatasetError."""
    record_id, qa, fail = record_frame(record, index, path)
    for name in ("pre_text", "post_text"):
        if not _strings(record.get(name)):
            raise fail(name, "a list of strings")
    table = record.get("table")
    if not isinstance(table, list) or not all(_strings(row) for row in table):
        raise fail("table", "a list of rows, each a list of strings")
    exe_ans = _text(qa.get("exe_ans"))
    return {
        "id": record_id,
        "pre_text": render_text(record["pre_text"]),
        "post_text": render_text(record["post_text"]),
        "table": render_table(table),
        "question": _text(qa.get("question")),
        "answer": exe_ans if exe_ans.strip() else _text(qa.get("answer")),
        "program": _text(qa.get("program")),
        "exe_ans": exe_ans,
        "gold_inds": "" if qa.get("gold_inds") is None else json.dumps(qa["gold_inds"], ensure_ascii=False),
    }


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def rows_from_records(records: Iterable[Any], path: str | os.PathLike) -> tuple[list[dict[str, str]], list[str]]:
    """(rows kept, ids of the rows dropped because their question or answer is empty)."""
    kept, dropped = [], []
    for index, record in enumerate(records):
        row = record_row(record, index, path)
        if row["question"].strip() and row["answer"].strip():
            kept.append(row)
        else:
            dropped.append(row["id"])
    return kept, dropped


def dumps_csv(rows: Iterable[dict[str, str]]) -> str:
    """The CSV text: a header of :data:`COLUMNS`, then one record per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)  # CRLF ends a record: then a lone CR in a cell is quoted
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --- CSV back to records -----------------------------------------------------------------------------

# The PoT-distillation study's CSVs, read as they are: its FinQA CSV (the six columns, no id, no exe_ans) and its
# teacher CSV (and the filtered CSV, the same columns) without any FinQA column.
STUDY_COLUMNS = ("pre_text", "post_text", "table", "question", "answer", "program")
STUDY_TEACHER_COLUMNS = ("prompt", "generated_code", "actual_answer", "expected_answer")
BAD_PROGRAM_CHOICES = ("skip", "refuse")  # a study row whose program does not execute
_PASSAGE, _QUESTION, _MARKER = "###Passage", "###Question", "###"
logger = logging.getLogger(__name__)


def derived_id(path: str | os.PathLike, row_number: int) -> str:
    """The id of a row of a CSV without an ``id`` column: file name (no suffix) and row number (1: the first row
    after the header), e.g. ``train-17``."""
    return f"{Path(path).stem}-{row_number}"


def read_csv_records(path: str | os.PathLike, *, bad_program: str = "skip") -> list[dict]:
    """The official-format records of a FinQA CSV (unvalidated), in one of three shapes:

    * this project's (:data:`COLUMNS`, written by :func:`dumps_csv` or the teacher), read as written;
    * the study's FinQA CSV, :data:`STUDY_COLUMNS` and nothing else needed: a missing ``id`` is
      :func:`derived_id`, a missing ``exe_ans`` the value of executing ``program`` with the DSL on the row's
      table. A row whose program does not execute is skipped (``bad_program="skip"``: logged with its row number,
      and counted) or refuses the file (``"refuse"``: :class:`DatasetError` naming the row);
    * the study's teacher or filtered CSV (:data:`STUDY_TEACHER_COLUMNS`, no FinQA column): each row is an
      example whose question and passage are the last problem of its ``prompt`` (the text after the last
      ``###Passage`` and ``###Question`` markers; the whole prompt is the question when it has none), with no
      program, ``exe_ans`` from ``expected_answer`` and the teacher's ``generated_code`` as its code target.

    Columns beyond these are kept as top-level fields of the record (e.g. ``generated_code``).
    """
    if bad_program not in BAD_PROGRAM_CHOICES:
        raise ValueError(f"bad_program {bad_program!r} is not one of {BAD_PROGRAM_CHOICES}")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        shape = _shape(path, columns)
        records, skipped = [], []
        for number, row in enumerate(reader, start=1):
            if None in row or None in row.values():
                raise DatasetError(f"{path}: line {reader.line_num}: expected {len(columns)} cells")
            if "id" not in columns:
                row = {"id": derived_id(path, number), **row}
            if shape == "teacher":
                records.append(_teacher_record(row))
                continue
            if "exe_ans" not in columns:
                failure = _execute_into(row)
                if failure:
                    if bad_program == "refuse":
                        raise DatasetError(f"{path}: row {number} (line {reader.line_num}, id {row['id']}): field "
                                           f"'program': a program that executes, got {row['program']!r} "
                                           f"({failure}); pass --bad_program skip to skip such rows")
                    skipped.append(f"row {number} ({failure})")
                    continue
            records.append(_record(row))
    if skipped:
        shown = ", ".join(skipped[:20]) + (f", and {len(skipped) - 20} more" if len(skipped) > 20 else "")
        logger.warning("%s: skipped %d of %d rows whose program does not execute: %s", path, len(skipped),
                       len(skipped) + len(records), shown)
    return records


def _shape(path: str | os.PathLike, columns: tuple[str, ...]) -> str:
    """``finqa`` (this project's or the study's FinQA CSV) or ``teacher`` (the study's teacher CSV)."""
    if all(column in columns for column in STUDY_COLUMNS):
        return "finqa"
    if all(column in columns for column in STUDY_TEACHER_COLUMNS):
        return "teacher"
    missing = [column for column in STUDY_COLUMNS if column not in columns]
    raise DatasetError(f"{path}: missing CSV column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)} "
                       f"(id, exe_ans and gold_inds optional: the study's {', '.join(STUDY_COLUMNS)}), or a "
                       f"teacher CSV with {', '.join(STUDY_TEACHER_COLUMNS)}")


def _execute_into(row: dict[str, str]) -> str:
    """Set ``row["exe_ans"]`` from its program run on its table; '' when it ran, else why it did not."""
    program = row["program"].strip()
    if not program:
        return "no program"
    execution = execute(program, [tuple(cells) for cells in parse_table(row["table"])])
    if not execution.ok:
        return str(execution.reason)
    row["exe_ans"] = str(execution.value)  # yes/no, or the float's shortest repr (read back by _exe_ans)
    return ""


def _teacher_record(row: dict[str, str]) -> dict:
    passage, question = _last_problem(row["prompt"])
    expected = row["expected_answer"].strip()
    return {
        **{column: cell for column, cell in row.items() if column != "id"},
        "pre_text": [line for line in passage.split("\n") if line.strip()],
        "post_text": [],
        "table": [],
        "id": row["id"],
        "qa": {"question": question, "answer": expected or None, "program": "",
               "exe_ans": _exe_ans({"true": YES, "false": NO}.get(expected.lower(), expected))},
    }


def _last_problem(prompt: str) -> tuple[str, str]:
    """(passage, question) of the last problem of a teacher prompt (see :func:`read_csv_records`)."""
    at = prompt.rfind(_QUESTION)
    if at < 0:
        return "", prompt.strip()
    before, after = prompt[:at], prompt[at + len(_QUESTION):]
    passage_at = before.rfind(_PASSAGE)
    passage = before[passage_at + len(_PASSAGE):] if passage_at >= 0 else ""
    end = after.find(_MARKER)
    return passage.strip(), (after if end < 0 else after[:end]).strip()


def _record(row: dict[str, str]) -> dict:
    """The official-format record of a row; columns beyond :data:`COLUMNS` (e.g. a teacher CSV's
    ``generated_code``) are kept as top-level fields."""
    return {
        **{column: cell for column, cell in row.items() if column not in COLUMNS},
        "pre_text": parse_text(row["pre_text"]),
        "post_text": parse_text(row["post_text"]),
        "table": parse_table(row["table"]),
        "id": row["id"],
        "qa": {"question": row["question"], "answer": row["answer"] or None, "program": row["program"],
               "exe_ans": _exe_ans(row["exe_ans"]), **_gold_inds(row.get("gold_inds"))},
    }


def _gold_inds(cell: str | None) -> dict:
    """``{"gold_inds": ...}`` from the JSON cell ({} when empty or absent); text that is not JSON is kept, so the
    record validator names the record and the field."""
    if not cell:
        return {}
    try:
        return {"gold_inds": json.loads(cell)}
    except json.JSONDecodeError:
        return {"gold_inds": cell}


def _exe_ans(cell: str) -> float | str | None:
    if cell in (YES, NO) or not cell:
        return cell or None
    try:
        return float(cell)
    except ValueError:
        return cell  # the validator names the row and the field
