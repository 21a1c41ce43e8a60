"""What every inference backend takes and gives: decoding settings in, one :class:`Generation` per prompt out.

A backend is a callable ``generate(records, settings)`` that yields ``(record, Generation)`` pairs, in any
order, for records with ``.id`` and ``.prompt``. :mod:`finqa_dsl.inference.predictions_file` streams them to
disk; :mod:`finqa_dsl.inference.engines` is the Hugging Face backend and its engines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

ENGINES = ("auto", "static", "prefix", "continuous")  # see finqa_dsl.inference.engines
PER_EXAMPLE = "per_example"  # batch size 1: latency_ms is the example's own single-stream latency
BATCH_WALL_TIME = "batch_wall_time"  # static, batch size > 1: latency_ms runs from its batch's start until it left
IN_FLIGHT = "in_flight"  # prefix/continuous: latency_ms runs from the example's admission to its last token


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs (the seed's ``--generation_*`` flags), the inference batch size, the engine
    (:data:`ENGINES`), the target's stop strings and how often finished rows leave a static batch."""

    max_new_tokens: int = 128
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    engine: str = "auto"
    stop_strings: tuple[str, ...] = ()
    exit_every: int = 4  # static/prefix: new tokens between removals of finished rows (0: never; BENCHMARKS.md)

    def __post_init__(self):
        check_engine(self.engine, self.num_beams)

    @property
    def latency_mode(self) -> str:
        return PER_EXAMPLE if self.batch_size == 1 else BATCH_WALL_TIME


def check_engine(engine: str, num_beams: int) -> None:
    """Raise ValueError for an engine that does not exist or cannot decode with ``num_beams``."""
    if engine not in ENGINES:
        raise ValueError(f"inference engine {engine!r} is not one of: {', '.join(ENGINES)}.")
    if num_beams > 1 and engine in ("prefix", "continuous"):
        raise ValueError(f"inference engine {engine!r} does not do beam search (num_beams {num_beams}): "
                         "use the static or auto engine.")


@dataclass(frozen=True)
class Generation:
    """One finished generation."""

    text: str  # new tokens only, special tokens skipped, stripped
    new_tokens: int  # up to and including the stop token
    latency_ms: float  # see PER_EXAMPLE / BATCH_WALL_TIME
    latency_mode: str
    batch_size: int  # members of the batch it was generated in
    share_ms: float  # its part of the generation wall time: the shares of all rows add up to it


class Backend(Protocol):
    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]: ...
