"""Test predictions streamed to a JSONL file: one flushed line per finished generation, resumable after a crash.

With ``--num_samples N`` every example has N rows, ``sample`` 0 to N-1, generated in the passes of
:meth:`~finqa_dsl.inference.interface.GenerationSettings.passes`; a row is keyed by ``(id, sample)``.

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
from finqa_dsl.core.voting import sample_of
from finqa_dsl.inference.interface import Backend, GenerationSettings


@dataclass(frozen=True)
class GenerationStats:
    generated: int  # generations (examples x samples)
    skipped: int  # already in the output file or its shards, from an earlier, interrupted run
    seconds: float  # wall clock of this call, for the generated examples only
    new_tokens: int  # of the generated examples only


@dataclass(frozen=True)
class Sample:
    """One generation to make: a record (whose ``id``, ``prompt``, ``grammar``... it passes on) and which of its
    samples it is."""

    record: Any
    sample: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)


def row_key(row: dict[str, Any]) -> tuple[str, int]:
    """``(id, sample)`` of a predictions row (sample 0 in files written before samples existed)."""
    return row[row_keys.ID], sample_of(row)


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
    """Generate with ``backend`` the ``settings.num_samples`` samples of each record that are not yet in ``path`` or
    its shards and append one JSON line per finished generation: ``id, sample, question, prompt, generation,
    new_tokens, latency_ms, latency_mode, batch_size, share_ms, logprob``, plus what
    ``annotate(record, generation_text)`` returns (the driver's target field and scores). Every line is flushed as
    it is written, so an interrupted run loses nothing written and a rerun skips those samples. Process ``rank`` of
    ``world_size`` passes its share of the records and writes to :func:`shard_path`."""
    stream = _stream(path, rank, world_size)
    wanted = [Sample(record, sample) for record in records for sample in range(settings.num_samples)]
    todo = stream.pending(wanted, id_of=lambda item: (item.id, item.sample))
    began, new_tokens = time.perf_counter(), 0
    with stream.appender() as appender:
        for pass_settings, numbers in settings.passes():
            for item, generation in backend([item for item in todo if item.sample in numbers], pass_settings):
                row = {row_keys.ID: item.id, row_keys.SAMPLE: item.sample, row_keys.QUESTION: item.question,
                       row_keys.PROMPT: item.prompt, row_keys.GENERATION: generation.text,
                       row_keys.NEW_TOKENS: generation.new_tokens, row_keys.LATENCY_MS: generation.latency_ms,
                       row_keys.LATENCY_MODE: generation.latency_mode, row_keys.BATCH_SIZE: generation.batch_size,
                       row_keys.SHARE_MS: generation.share_ms, row_keys.LOGPROB: generation.logprob}
                if annotate is not None:
                    row.update(annotate(item.record, generation.text))
                appender.write(row)
                new_tokens += generation.new_tokens
    return GenerationStats(generated=len(todo), skipped=len(wanted) - len(todo),
                           seconds=time.perf_counter() - began, new_tokens=new_tokens)


def shard_path(path: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Where process ``rank`` of ``world_size`` streams its predictions: ``path`` itself for a single process,
    ``<stem>.rank<r>-of-<n><suffix>`` beside it otherwise."""
    path = Path(path)
    return path if world_size == 1 else path.with_name(f"{path.stem}.rank{rank}-of-{world_size}{path.suffix}")


def finished_ids(path: str | os.PathLike) -> set[str]:
    """Ids with a sample predicted in ``path`` or in any shard beside it (left by this run or an interrupted one,
    whatever its number of processes)."""
    return {example_id for example_id, _ in _stream(path).finished_ids()}


def merge_shards(path: str | os.PathLike, records: Sequence, num_samples: int = 1) -> None:
    """Rewrite ``path`` with ``num_samples`` rows per record, in the order of ``records`` and then of samples,
    taken from ``path`` and its shards (the first row of an ``(id, sample)`` wins), then delete the shards."""
    stream = _stream(path)
    by_key = stream.kept_rows()
    keys = [(record.id, sample) for record in records for sample in range(num_samples)]
    atomic_write_jsonl(path, (by_key[key] for key in keys if key in by_key))
    for shard in stream.sources[1:]:
        shard.unlink()


def _stream(path: str | os.PathLike, rank: int = 0, world_size: int = 1) -> ResumableJsonl:
    """Process ``rank``'s stream: written to its :func:`shard_path`, read with ``path`` and every shard beside it
    (left by this run or an interrupted one, whatever its number of processes)."""
    return ResumableJsonl(shard_path(path, rank, world_size), also_read=(Path(path), *_shards(path)),
                          key=row_key)


def _shards(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.rank*-of-*{path.suffix}"))
