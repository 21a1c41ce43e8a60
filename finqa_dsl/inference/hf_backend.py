"""The Hugging Face backend: test inference on a loaded transformers model, by the engine that
``--inference_engine`` names (the registry and what each honours: :data:`finqa_dsl.inference.interface.ENGINES`).

- ``static``: left-padded batches of ``model.generate`` (:mod:`finqa_dsl.inference.engines.static`); every decoding
  mode.
- ``prefix``: a shared-prefix KV cache (read once per step by cascade attention on CPU), each prompt's suffix
  encoded without padding, and waiting prompts joining the running rows as others leave
  (:mod:`finqa_dsl.inference.engines.prefix`); greedy or sampling.
- ``continuous``: transformers' continuous batching (:mod:`finqa_dsl.inference.engines.continuous`); greedy or
  sampling.
- ``auto``: ``prefix`` (BENCHMARKS.md: the fastest on an idle 2-core CPU; continuous batching was the slowest
  batched engine there), or ``static`` for what the prefix engine does not honour (beam search) and for models
  with cache layers that it cannot stack (linear attention, shared KV:
  :func:`finqa_dsl.inference.engines.kv_cache.can_stack`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from importlib import import_module
from typing import Any

from finqa_dsl.inference.engines.kv_cache import can_stack
from finqa_dsl.inference.interface import (
    AUTO,
    AUTO_ORDER,
    ENGINES,
    HF,
    Generation,
    GenerationSettings,
    check_settings,
    honours,
)

Engine = Callable[[Any, Any, Sequence, GenerationSettings], Iterator[tuple[Any, Generation]]]
GENERATE: dict[str, Engine] = {name: import_module(f"finqa_dsl.inference.engines.{name}").generate
                               for name in ENGINES}


def resolve_engine(settings: GenerationSettings, config) -> str:
    """The engine that ``settings.engine`` means for these settings and a model of this ``config``: ``auto`` is the
    first of :data:`~finqa_dsl.inference.interface.AUTO_ORDER` that honours the settings and can batch the model's
    cache (only the prefix engine needs that)."""
    if settings.engine != AUTO:
        return settings.engine
    return next(name for name in AUTO_ORDER
                if honours(name, settings) and (name != "prefix" or can_stack(config)))


class HFBackend:
    """:class:`~finqa_dsl.inference.interface.Backend` over a loaded transformers model and its tokenizer."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
        check_settings(HF, settings)
        return GENERATE[resolve_engine(settings, self.model.config)](self.model, self.tokenizer, records, settings)
