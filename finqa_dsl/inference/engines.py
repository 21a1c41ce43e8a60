"""The Hugging Face backend and its engines: which one generates, chosen per run (``--inference_engine``).

- ``static``: left-padded batches of ``model.generate`` (:mod:`finqa_dsl.inference.hf`); every decoding mode.
- ``prefix``: the same batches over a shared-prefix KV cache (:mod:`finqa_dsl.inference.prefix_cache`); greedy
  or sampling.
- ``continuous``: transformers' continuous batching (:mod:`finqa_dsl.inference.continuous`); greedy or sampling.
- ``auto``: ``static`` for beam search, else ``prefix`` (BENCHMARKS.md: the fastest on an idle 2-core CPU, 4.8x
  the one-by-one loop zero-shot; continuous batching was the slowest batched engine there).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from finqa_dsl.inference import continuous, hf, prefix_cache
from finqa_dsl.inference.backend import Generation, GenerationSettings

_GENERATE = {"static": hf.generate, "prefix": prefix_cache.generate, "continuous": continuous.generate}


def resolve_engine(settings: GenerationSettings) -> str:
    """The engine that ``settings.engine`` means for these decoding settings."""
    if settings.engine != "auto":
        return settings.engine
    return "static" if settings.num_beams > 1 else "prefix"


class HFBackend:
    """:class:`~finqa_dsl.inference.backend.Backend` over a loaded transformers model and its tokenizer."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        return _GENERATE[resolve_engine(settings)](self.model, self.tokenizer, records, settings)
