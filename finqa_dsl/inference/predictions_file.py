"""Test predictions streamed to a JSONL file: one flushed line per finished example, resumable after a crash."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from finqa_dsl.core.io import JsonlAppender, read_jsonl_tolerant
from finqa_dsl.inference.backend import Backend, GenerationSettings


@dataclass(frozen=True)
class GenerationStats:
    generated: int
    skipped: int  # already in the output file from an earlier, interrupted run
    seconds: float
    new_tokens: int

def generate_to_file(backend: Backend, records: Sequence, path: str | os.PathLike, *,
                     settings: GenerationSettings,
                     annotate: Callable[[Any, str], dict[str, Any]] | None = None) -> GenerationStats:
    """Generate with ``backend`` for the records whose id is not yet in ``path`` and append one JSON line per finished
    example: ``id, question, prompt, generation, new_tokens, latency_ms, latency_mode, batch_size``, plus
    what ``annotate(record, generation_text)`` returns (the driver's executed value and scores). Every line
    is flushed as it is written, so an interrupted run loses nothing written and a rerun skips those ids."""
    done = {row["id"] for row in read_jsonl_tolerant(path)}
    todo = [record for record in records if record.id not in done]
    began, new_tokens = time.perf_counter(), 0
    with JsonlAppender(path) as appender:
        for record, generation in backend(todo, settings):
            row = {"id": record.id, "question": record.question, "prompt": record.prompt,
                   "generation": generation.text, "new_tokens": generation.new_tokens,
                   "latency_ms": generation.latency_ms, "latency_mode": generation.latency_mode,
                   "batch_size": generation.batch_size}
            if annotate is not None:
                row.update(annotate(record, generation.text))
            appender.write(row)
            new_tokens += generation.new_tokens
    return GenerationStats(generated=len(todo), skipped=len(records) - len(todo),
                           seconds=time.perf_counter() - began, new_tokens=new_tokens)
