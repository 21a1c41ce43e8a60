"""The Hugging Face backend and its engines: which one generates, chosen per run (``--inference_engine``).

- ``static``: left-padded batches of ``model.generate`` (:mod:`finqa_dsl.inference.hf`); every decoding mode.
- ``prefix``: a shared-prefix KV cache (read once per step by cascade attention on CPU), each prompt's suffix
  encoded without padding, and waiting prompts joining the running rows as others leave
  (:mod:`finqa_dsl.inference.prefix_cache`); greedy or sampling.
- ``continuous``: transformers' continuous batching (:mod:`finqa_dsl.inference.continuous`); greedy or sampling.
- ``auto``: ``prefix`` (BENCHMARKS.md: the fastest on an idle 2-core CPU; continuous batching was the slowest
  batched engine there), or ``static`` for beam search and for models with cache layers that the prefix engine
  cannot stack (linear attention, shared KV: :func:`finqa_dsl.inference.kv_cache.can_stack`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from finqa_dsl.inference import continuous, hf, prefix_cache
from finqa_dsl.inference.backend import Generation, GenerationSettings
from finqa_dsl.inference.kv_cache import can_stack

_GENERATE = {"static": hf.generate, "prefix": prefix_cache.generate, "continuous": continuous.generate}


def resolve_engine(settings: GenerationSettings, model) -> str:
    """The engine that ``settings.engine`` means for these decoding settings and this model."""
    if settings.engine != "auto":
        return settings.engine
    return "prefix" if settings.num_beams == 1 and can_stack(model) else "static"


class HFBackend:
    """:class:`~finqa_dsl.inference.backend.Backend` over a loaded transformers model and its tokenizer."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        return _GENERATE[resolve_engine(settings, self.model)](self.model, self.tokenizer, records, settings)
