"""Static batches over a shared-prefix KV cache: the tokens that every prompt starts with (the instruction and,
few-shot, the k solved exemplars) go through the model once; each prompt then encodes only its own suffix.

The prefix is the longest common token prefix of the encoded prompts (at least one token of every prompt is left
to encode). Its cache is computed once with batch size 1. For each prompt of a batch, a copy of it is extended by
the prompt's suffix (all but its last token, one prompt at a time: no padding tokens are encoded), and the rows
are stacked left-padded (:func:`finqa_dsl.inference.kv_cache.stacked`): ``[padding | prefix | suffix]``, the
layout of a left-padded batch, so sliding-window layers (Gemma-3) see each row's last tokens as they would
unbatched. ``model.generate`` continues from there with the prompts' last tokens; the attention mask hides the
padding and generate derives position ids from it. The prefix keys and values are those of the whole prompt
(causal attention), so greedy outputs match the static engine's up to float rounding (tests and BENCHMARKS.md
check that they are identical).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import DynamicCache

from finqa_dsl.core.chat import encode_prompt
from finqa_dsl.inference.backend import Generation, GenerationSettings
from finqa_dsl.inference.hf import batched, left_pad
from finqa_dsl.inference.kv_cache import growing_cache, stacked


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens that all ``prompts`` start with, leaving at least one token of the shortest to encode."""
    if not prompts:
        return 0
    first, length = prompts[0], min(len(p) for p in prompts) - 1
    for prompt in prompts[1:]:
        length = next((i for i in range(length) if prompt[i] != first[i]), length)
    return max(length, 0)


def prefix_cache(model, prefix: list[int]) -> DynamicCache:
    """The KV cache of ``prefix`` (batch size 1)."""
    return extended(model, growing_cache(model), prefix)


def extended(model, cache: DynamicCache, tokens: list[int]) -> DynamicCache:
    """``cache`` (batch size 1) after ``tokens`` went through the model after it."""
    if not tokens:
        return cache
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(input_ids=torch.tensor([tokens], device=device), cache=cache, use_cache=True, logits_to_keep=1)
    return cache


def generate(model, tokenizer, records: Sequence,
             settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
    """As :func:`finqa_dsl.inference.hf.generate`, with the shared prefix encoded once (its time is counted in
    the first batch's wall time)."""
    if settings.num_beams > 1:
        raise ValueError("The prefix engine decodes greedily or by sampling, not with beams: use the static engine.")
    began = time.perf_counter()
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    length = shared_prefix_length(encoded)
    prefix = encoded[0][:length] if encoded else []
    cache = prefix_cache(model, prefix)

    def prepare(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, DynamicCache]:
        rows = [extended(model, copy.deepcopy(cache), prompt[length:-1]) for prompt in prompts]
        return *left_pad(prompts, pad_id), stacked(rows, model)

    return batched(model, tokenizer, records, encoded, settings, prepare, setup_seconds=time.perf_counter() - began)
