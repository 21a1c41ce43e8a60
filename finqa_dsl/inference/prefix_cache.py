"""Static batches over a shared-prefix KV cache: the tokens that every prompt starts with (the instruction and,
few-shot, the k solved exemplars) go through the model once; each batch then encodes only its prompts' suffixes.

The prefix is the longest common token prefix of the encoded prompts (at least one token of every prompt is left
to encode). Its cache is computed once with batch size 1, copied and repeated for each batch, and passed to
``model.generate`` with rows laid out ``[prefix | padding | suffix]``: the attention mask hides the padding and
generate derives position ids from it, so every suffix token sits at the position it has in the whole prompt.
The prefix keys and values are those of the whole prompt (causal attention), so greedy outputs match the static
engine's up to float rounding (tests and BENCHMARKS.md check that they are identical).
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
from finqa_dsl.inference.kv_cache import growing_cache


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
    device = next(model.parameters()).device
    with torch.inference_mode():
        output = model(input_ids=torch.tensor([prefix], device=device), cache=growing_cache(model), use_cache=True)
    return output.cache


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
    cache = prefix_cache(model, prefix) if length else None

    def prepare(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, DynamicCache | None]:
        suffix_ids, suffix_mask = left_pad([p[length:] for p in prompts], pad_id)
        rows = len(prompts)
        input_ids = torch.cat([torch.tensor([prefix] * rows, dtype=torch.long).view(rows, length), suffix_ids], 1)
        attention_mask = torch.cat([torch.ones(rows, length, dtype=torch.long), suffix_mask], 1)
        if cache is None:
            return input_ids, attention_mask, None
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(rows)
        return input_ids, attention_mask, past

    return batched(model, tokenizer, records, encoded, settings, prepare, setup_seconds=time.perf_counter() - began)
