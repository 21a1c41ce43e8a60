"""Test predictions streamed to a JSONL file: one flushed line per finished example, resumable after a crash.

Under several processes each one streams its share into a shard file beside the predictions file
(``test_predictions.rank0-of-2.jsonl``, ...); :func:`merge_shards` folds them into the predictions file. Streaming
and resuming are :class:`finqa_dsl.core.io.ResumableJsonl`'s, over the predictions file and its shards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.io import ResumableJsonl, atomic_write_jsonl
from finqa_dsl.core.prediction_rows import PredictionFileError, read_prediction_rows
from finqa_dsl.inference.interface import Backend, GenerationSettings


@dataclass(frozen=True)
class GenerationStats:
    generated: int
    skipped: int  # already in the output file or its shards, from an earlier, interrupted run
    seconds: float  # wall clock of this call, for the generated examples only
    new_tokens: int  # of the generated examples only


def finished_rows(path: str | os.PathLike, ids: Collection[str]) -> list[dict[str, Any]]:
    """The rows an earlier, interrupted run left in ``path`` and its shards ([] when there are none), checked
    before any model loads: every line but a torn last one must be a predictions row, and of one of ``ids`` (the
    examples of this run), else :class:`PredictionFileError` names the file and line."""
    rows = []
    for file in _stream(path).sources:
        if file.exists():
            rows += read_prediction_rows(file, row_keys.GENERATION, torn_tail_ok=True)[0]
    foreign = [row[row_keys.ID] for row in rows if row[row_keys.ID] not in ids]
    if foreign:
        raise PredictionFileError(
            f"{path}: {len(foreign)} row(s) of examples this run does not have (first: id {foreign[0]}): the file "
            "belongs to another test set; move it away or choose another --output_folder"
        )
    return rows


def generate_to_file(backend: Backend, records: Sequence, path: str | os.PathLike, *,
                     settings: GenerationSettings,
                     annotate: Callable[[Any, str], dict[str, Any]] | None = None,
                     rank: int = 0, world_size: int = 1) -> GenerationStats:
    """Generate with ``backend`` for the records whose id is not yet in ``path`` or its shards and append one JSON
    line per finished example: ``id, question, prompt, generation, new_tokens, latency_ms, latency_mode,
    batch_size, share_ms``, plus what ``annotate(record, generation_text)`` returns (the driver's target field and
    scores). Every line is flushed as it is written, so an interrupted run loses nothing written and a rerun skips those
    ids. Process ``rank`` of ``world_size`` passes its share of the records and writes to :func:`shard_path`."""
    stream = _stream(path, rank, world_size)
    todo = stream.pending(records)
    began, new_tokens = time.perf_counter(), 0
    with stream.appender() as appender:
        for record, generation in backend(todo, settings):
            row = {row_keys.ID: record.id, row_keys.QUESTION: record.question, row_keys.PROMPT: record.prompt,
                   row_keys.GENERATION: generation.text, row_keys.NEW_TOKENS: generation.new_tokens,
                   row_keys.LATENCY_MS: generation.latency_ms, row_keys.LATENCY_MODE: generation.latency_mode,
                   row_keys.BATCH_SIZE: generation.batch_size, row_keys.SHARE_MS: generation.share_ms}
            if annotate is not None:
                row.update(annotate(record, generation.text))
            appender.write(row)
            new_tokens += generation.new_tokens
    return GenerationStats(generated=len(todo), skipped=len(records) - len(todo),
                           seconds=time.perf_counter() - began, new_tokens=new_tokens)


def shard_path(path: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Where process ``rank`` of ``world_size`` streams its predictions: ``path`` itself for a single process,
    ``<stem>.rank<r>-of-<n><suffix>`` beside it otherwise."""
    path = Path(path)
    return path if world_size == 1 else path.with_name(f"{path.stem}.rank{rank}-of-{world_size}{path.suffix}")


def finished_ids(path: str | os.PathLike) -> set[str]:
    """Ids predicted in ``path`` or in any shard beside it (left by this run or an interrupted one, whatever
    its number of processes)."""
    return _stream(path).finished_ids()


def merge_shards(path: str | os.PathLike, records: Sequence) -> None:
    """Rewrite ``path`` with one row per record, in the order of ``records``, taken from ``path`` and its shards
    (the first row of an id wins), then delete the shards."""
    stream = _stream(path)
    by_id = stream.kept_rows()
    atomic_write_jsonl(path, (by_id[record.id] for record in records if record.id in by_id))
    for shard in stream.sources[1:]:
        shard.unlink()


def _stream(path: str | os.PathLike, rank: int = 0, world_size: int = 1) -> ResumableJsonl:
    """Process ``rank``'s stream: written to its :func:`shard_path`, read with ``path`` and every shard beside it
    (left by this run or an interrupted one, whatever its number of processes)."""
    return ResumableJsonl(shard_path(path, rank, world_size), also_read=(Path(path), *_shards(path)),
                          key=row_keys.ID)


def _shards(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.rank*-of-*{path.suffix}"))
