"""Test predictions streamed to a JSONL file: one flushed line per finished example, resumable after a crash."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.io import JsonlAppender
from finqa_dsl.core.prediction_rows import PredictionFileError, read_prediction_rows
from finqa_dsl.inference.backend import Backend, GenerationSettings


@dataclass(frozen=True)
class GenerationStats:
    generated: int
    skipped: int  # already in the output file from an earlier, interrupted run
    seconds: float  # wall clock of this call, for the generated examples only
    new_tokens: int  # of the generated examples only


def finished_rows(path: str | os.PathLike, ids: Collection[str]) -> list[dict[str, Any]]:
    """The rows an earlier, interrupted run left in ``path`` ([] when there is none), checked before any model
    loads: every line but a torn last one must be a predictions row, and of one of ``ids`` (the examples of
    this run), else :class:`PredictionFileError` names the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows, _ = read_prediction_rows(path, row_keys.GENERATION, torn_tail_ok=True)
    foreign = [row[row_keys.ID] for row in rows if row[row_keys.ID] not in ids]
    if foreign:
        raise PredictionFileError(
            f"{path}: {len(foreign)} row(s) of examples this run does not have (first: id {foreign[0]}): the file "
            "belongs to another test set; move it away or choose another --output_folder"
        )
    return rows


def generate_to_file(backend: Backend, records: Sequence, path: str | os.PathLike, *,
                     settings: GenerationSettings,
                     annotate: Callable[[Any, str], dict[str, Any]] | None = None) -> GenerationStats:
    """Generate with ``backend`` for the records whose id is not yet in ``path`` and append one JSON line per finished
    example: ``id, question, prompt, generation, new_tokens, latency_ms, latency_mode, batch_size``, plus
    what ``annotate(record, generation_text)`` returns (the driver's target field and scores). Every line
    is flushed as it is written, so an interrupted run loses nothing written and a rerun skips those ids."""
    done = {row[row_keys.ID] for row in finished_rows(path, {record.id for record in records})}
    todo = [record for record in records if record.id not in done]
    began, new_tokens = time.perf_counter(), 0
    with JsonlAppender(path) as appender:
        for record, generation in backend(todo, settings):
            row = {row_keys.ID: record.id, row_keys.QUESTION: record.question, row_keys.PROMPT: record.prompt,
                   row_keys.GENERATION: generation.text, row_keys.NEW_TOKENS: generation.new_tokens,
                   row_keys.LATENCY_MS: generation.latency_ms, row_keys.LATENCY_MODE: generation.latency_mode,
                   row_keys.BATCH_SIZE: generation.batch_size}
            if annotate is not None:
                row.update(annotate(record, generation.text))
            appender.write(row)
            new_tokens += generation.new_tokens
    return GenerationStats(generated=len(todo), skipped=len(records) - len(todo),
                           seconds=time.perf_counter() - began, new_tokens=new_tokens)
