"""The prefix engine: the tokens that every prompt starts with (the instruction and, few-shot, the k solved
exemplars) go through the model once, each prompt then encodes only its own suffix, and prompts join the running
rows as others leave.

The prefix is the longest common token prefix of the encoded prompts (leaving at least one token of every prompt
to encode; two under cascade attention, so that every row's own cache holds a token). Its cache is computed once
with batch size 1. Admitted prompts encode their suffixes (all but the last token; no padding tokens are encoded;
prompts admitted together that are identical, such as the samples of one record, once) in one of two layouts:

- **cascade** (:func:`.cascade_attention.can_cascade`: CPU, every layer over the whole context): the rows hold
  only their own tokens, left-padded, and every layer attends to the one prefix cache and to the row's own
  (:mod:`.cascade_attention`). The suffixes go through the model packed, several in one sequence
  (:func:`packed_suffixes`), and their positions start after the prefix (:meth:`.static.Rows.positions`).
- **copied** (otherwise, e.g. Gemma-3's sliding window): each prompt extends a copy of the prefix cache by its
  suffix, and the rows are stacked left-padded (:func:`.kv_cache.stacked`):
  ``[padding | prefix | suffix]``, the layout of a left-padded batch, so sliding-window layers see each row's
  last tokens as they would unbatched.

:func:`.static.decode` (the static engine's decoding loop) continues from there with the prompts' last tokens (the
attention mask hides the padding); whenever rows leave, as many waiting prompts (longest first) are admitted and
joined to the running rows. The prefix keys and values are those of the whole prompt (causal attention), so greedy
outputs match the static engine's up to float rounding (tests and BENCHMARKS.md check that they are identical).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from transformers import DynamicCache

from finqa_dsl.core.chat import encode_prompt, pad_token_id
from finqa_dsl.inference.engines.cascade_attention import can_cascade, cascading
from finqa_dsl.inference.engines.kv_cache import growing_cache, stacked, unpacked
from finqa_dsl.inference.engines.static import Rows, longest_first, streamed
from finqa_dsl.inference.interface import IN_FLIGHT, PER_EXAMPLE, Generation, GenerationSettings
from finqa_dsl.models.batching import pad


def shared_prefix_length(prompts: Sequence[Sequence[int]], keep: int = 1) -> int:
    """Tokens that all ``prompts`` start with, leaving at least ``keep`` tokens of the shortest to encode."""
    if not prompts:
        return 0
    first, length = prompts[0], min(len(p) for p in prompts) - keep
    for prompt in prompts[1:]:
        length = next((i for i in range(length) if prompt[i] != first[i]), length)
    return max(length, 0)


def once_each(prompts: Sequence[Sequence[int]]) -> tuple[list[Sequence[int]], list[int]]:
    """The distinct ``prompts`` in order of first appearance, and for each prompt the index of its distinct one:
    the samples of one record (:meth:`~finqa_dsl.inference.interface.GenerationSettings.passes`) are encoded
    once."""
    index: dict[tuple[int, ...], int] = {}
    which = [index.setdefault(tuple(prompt), len(index)) for prompt in prompts]
    return [list(prompt) for prompt in index], which


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


PACK_TOKENS = 512  # suffix tokens per packed pass at most: attention within a pass is dense (BENCHMARKS.md)


def packed_suffixes(model, shared: DynamicCache, suffixes: list[list[int]]) -> DynamicCache:
    """The rows' own cache of ``suffixes`` after the ``shared`` prefix, under cascade attention. Suffixes go
    through the model packed: one after another in one sequence of up to :data:`PACK_TOKENS` tokens (each token
    sees the prefix and its own suffix's earlier tokens, at its position after the prefix); they come out as
    left-padded rows."""
    packs, pack, tokens = [], [], 0
    for suffix in suffixes:
        if pack and tokens + len(suffix) > PACK_TOKENS:
            packs.append(pack)
            pack, tokens = [], 0
        pack.append(suffix)
        tokens += len(suffix)
    packs.append(pack)
    return unpacked([(_packed_cache(model, shared, pack), list(map(len, pack))) for pack in packs], model)


def _packed_cache(model, shared: DynamicCache, suffixes: list[list[int]]) -> DynamicCache:
    """The batch-1 cache of ``suffixes`` one after another, each attending to ``shared`` and to itself."""
    lengths = [len(suffix) for suffix in suffixes]
    device = next(model.parameters()).device
    sequence = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(device)
    token = torch.arange(len(sequence), device=device)
    starts = torch.tensor([0, *itertools.accumulate(lengths)][:-1], device=device)
    mask = (sequence[:, None] == sequence[None, :]) & (token[:, None] >= token[None, :])
    cache = growing_cache(model)
    with torch.inference_mode():
        model(input_ids=torch.tensor([sum(suffixes, [])], device=device), attention_mask=mask[None, None],
              position_ids=(shared.get_seq_length() + token - starts[sequence])[None], cache=cache, use_cache=True,
              logits_to_keep=1)
    return cache


def generate(model, tokenizer, records: Sequence,
             settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]:
    """Yield ``(record, Generation)`` for every record as it finishes: prompts longest first, up to
    ``settings.batch_size`` decoding at once, the next ones joining as others leave. A row's ``latency_ms`` runs
    from its admission (the start of its suffix encoding; the shared prefix counts in the first rows') until it
    left; ``batch_size`` is the most rows in flight."""
    began = time.perf_counter()
    encoded = [encode_prompt(record.prompt, tokenizer) for record in records]
    cascade = can_cascade(model) and shared_prefix_length(encoded, keep=2) > 0
    length = shared_prefix_length(encoded, keep=2 if cascade else 1)
    shared = prefix_cache(model, encoded[0][:length] if encoded else [])
    queue = longest_first(encoded)
    pad_id = pad_token_id(tokenizer)
    device = next(model.parameters()).device

    def admit(rows: Rows | None) -> Rows | None:
        nonlocal began  # the first rows' admission began with the shared prefix
        free = settings.batch_size - (len(rows) if rows else 0)
        if not queue or free <= 0:
            return rows
        started, began = began or time.perf_counter(), None
        members = [queue.popleft() for _ in range(min(free, len(queue)))]
        if cascade:  # rows hold their suffixes only; the prefix stays shared
            prompts = [encoded[i][length:] for i in members]
            distinct, which = once_each(prompts)
            cache = packed_suffixes(model, shared, [prompt[:-1] for prompt in distinct])
            if len(distinct) < len(prompts):
                cache.batch_select_indices(torch.tensor(which, device=device))
        else:
            prompts = [encoded[i] for i in members]
            distinct, which = once_each(prompts)
            caches = [extended(model, copy.deepcopy(shared), prompt[length:-1]) for prompt in distinct]
            cache = stacked([caches[index] for index in which], model)
        input_ids, attention_mask = pad(prompts, pad_id, side="left")
        new = Rows.admitted_at(started, members, input_ids.to(device), attention_mask.to(device), cache,
                               length if cascade else 0)
        return rows.joined(new, model, pad_id) if rows else new

    mode = PER_EXAMPLE if settings.batch_size == 1 else IN_FLIGHT
    with cascading(model, shared) if cascade else nullcontext():
        yield from streamed(model, tokenizer, records, settings, admit, mode, lambda _: settings.batch_size)
