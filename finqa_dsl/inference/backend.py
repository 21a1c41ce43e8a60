"""What every inference backend takes and gives: decoding settings in, one :class:`Generation` per prompt out.

A backend is a callable ``generate(records, settings)`` that yields ``(record, Generation)`` pairs, in any
order, for records with ``.id`` and ``.prompt``. :mod:`finqa_dsl.inference.predictions_file` streams them to
disk; :mod:`finqa_dsl.inference.hf` is the Hugging Face backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

PER_EXAMPLE = "per_example"  # batch size 1: latency_ms is the example's own single-stream latency
BATCH_WALL_TIME = "batch_wall_time"  # batch size > 1: latency_ms is the wall time of the example's batch


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs (the seed's ``--generation_*`` flags) and the inference batch size."""

    max_new_tokens: int = 128
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16

    @property
    def latency_mode(self) -> str:
        return PER_EXAMPLE if self.batch_size == 1 else BATCH_WALL_TIME


@dataclass(frozen=True)
class Generation:
    """One finished generation."""

    text: str  # new tokens only, special tokens skipped, stripped
    new_tokens: int  # up to and including the stop token
    latency_ms: float  # see PER_EXAMPLE / BATCH_WALL_TIME
    latency_mode: str
    batch_size: int  # members of the batch it was generated in


class Backend(Protocol):
    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]: ...
