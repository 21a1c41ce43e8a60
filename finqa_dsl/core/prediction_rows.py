"""The rows of a predictions file (``test_predictions.jsonl``): every key defined here, once, and reading a
file of them back with a one-line error for any bad line.

A row written by the driver holds what generation gave (``id`` .. ``batch_size``), what the prediction is
(``target_field``) and the scores of :meth:`finqa_dsl.core.targets.Target.row_fields`. Files of other
tools (or of older versions) may carry the prediction text under ``prediction`` instead of ``generation``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.io import read_jsonl_lines

# Written by inference (finqa_dsl.inference.predictions_file).
ID = "id"
QUESTION = "question"
PROMPT = "prompt"
GENERATION = "generation"  # the model's text (new tokens, special tokens skipped)
NEW_TOKENS = "new_tokens"
LATENCY_MS = "latency_ms"
LATENCY_MODE = "latency_mode"
BATCH_SIZE = "batch_size"  # members of the batch the row was generated in
SHARE_MS = "share_ms"  # the row's part of the generation wall time (all rows' shares add up to it)
SAMPLE = "sample"  # which of an example's --num_samples generations the row is (0: the flags' own decoding)
LOGPROB = "logprob"  # the generation's summed token log-probability (None where the engine cannot tell)
# Written by the driver beside the scores.
TARGET_FIELD = "target_field"  # program | numerical | answer: what GENERATION is scored as
PARSED_PREDICTION = "parsed_prediction"
TARGET = "target"  # the gold text the model is taught to write
GOLD_PROGRAM = "gold_program"
GOLD_EXE_ANS = "gold_exe_ans"
GOLD_ANSWER = "gold_answer"
# The prediction text in files written by other tools.
LEGACY_PREDICTION = "prediction"


class PredictionFileError(UsageError):
    """A predictions file without an id and a prediction text on every line; the message names file and line."""


def read_prediction_rows(path: str | os.PathLike, text_field: str | None = None, *,
                         torn_tail_ok: bool = False) -> tuple[list[dict[str, Any]], str]:
    """The rows of ``path`` and the field holding their prediction text.

    Every non-blank line must be a JSON object with a non-empty string ``id`` and a string ``text_field``;
    ``text_field`` None takes ``generation`` when the first row has it, else ``prediction``. With
    ``torn_tail_ok`` a last line that a crash left unfinished is skipped (see
    :func:`finqa_dsl.core.io.read_jsonl_lines`). Anything else raises :class:`PredictionFileError`.
    """
    path = Path(path)
    try:
        lines = read_jsonl_lines(path, torn_tail_ok=torn_tail_ok)
    except UsageError as error:
        raise PredictionFileError(str(error)) from None
    except OSError as error:
        raise PredictionFileError(f"{path}: cannot read ({error.strerror or error})") from None
    rows = []
    for number, row in lines:
        where = f"{path}: line {number}"
        if not isinstance(row, dict):
            raise PredictionFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if not isinstance(row.get(ID), str) or not row[ID]:
            raise PredictionFileError(f"{where}: field '{ID}': expected a non-empty string")
        if text_field is None:
            text_field = GENERATION if GENERATION in row else LEGACY_PREDICTION
        if not isinstance(row.get(text_field), str):
            raise PredictionFileError(f"{where} (id {row[ID]}): field '{text_field}': expected a string")
        rows.append(row)
    return rows, text_field or GENERATION


def common_target_field(rows: list[dict[str, Any]], path: str | os.PathLike) -> str | None:
    """The ``target_field`` every row records; None when no row records one; an error when they differ."""
    fields = {row.get(TARGET_FIELD) for row in rows} - {None}
    if len(fields) > 1:
        raise PredictionFileError(f"{path}: field '{TARGET_FIELD}' differs between rows ({sorted(map(str, fields))}); "
                                  "score each target separately")
    return fields.pop() if fields else None

