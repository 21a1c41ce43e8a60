"""Cascade attention over a shared prefix: the prompts' common prefix lives in one cache of batch size 1, each row's
own tokens in the batch's cache, and attention reads both without the prefix being copied into every row.

With the prefix copied into every row, each decode step reads it once per row: 32 zero-shot rows read 258 prefix
tokens each, layer after layer, at every generated token (BENCHMARKS.md). Here each layer's attention is split in
two, as in FlashInfer's cascade inference: every row's queries against the one prefix (a single batch, the prefix
read once), and each row's queries against its own tokens (with the batch's padding and causal mask). The two
softmax parts are merged by their log-sum-exp. Prefix tokens come before every row token: they need no mask.

It runs on CPU, where torch's flash-attention kernel returns the log-sum-exp, for models whose layers all attend to
the whole context (:func:`can_cascade`; a sliding window would need the prefix masked by position). For the
duration of :func:`cascading`, the model's attention implementation is :data:`NAME` and its attention modules hold
the shared prefix's cache (``shared_prefix``); modules without one attend with plain SDPA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from finqa_dsl.inference.engines.kv_cache import GrowingLayer, growing_cache

NAME = "finqa_cascade"


def cascade_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """Attention of ``query`` (``[batch, heads, length, head_dim]``) over the keys and values of this layer in
    ``module.shared_prefix``, then ``key`` and ``value`` (the rows' own, under ``attention_mask``), as one softmax
    over both."""
    shared_prefix = getattr(module, "shared_prefix", None)
    if shared_prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    batch, heads, length, head_dim = query.shape
    kv_heads = key.shape[1]
    prefix = shared_prefix.layers[module.layer_idx]
    # every row's queries as one batch, a key/value head's query heads side by side
    every_row = query.reshape(batch, kv_heads, -1, head_dim).transpose(0, 1).reshape(1, kv_heads, -1, head_dim)
    prefix_out, prefix_lse = _flash(every_row, prefix.keys, prefix.values, None, scaling)
    prefix_out = prefix_out.reshape(kv_heads, batch, heads // kv_heads, length, head_dim).transpose(0, 1)
    prefix_lse = prefix_lse.reshape(kv_heads, batch, heads // kv_heads, length).transpose(0, 1)
    own_mask = _additive_mask(attention_mask, length, key.shape[-2], query.dtype, query.device)
    if length == 1:  # decoding: the query heads of a key/value head side by side, as transformers' SDPA does
        own_out, own_lse = _flash(query.reshape(batch, kv_heads, -1, head_dim), key, value, own_mask, scaling)
    else:
        groups = heads // kv_heads
        own_out, own_lse = _flash(query, repeat_kv(key, groups), repeat_kv(value, groups), own_mask, scaling)
    own_out = own_out.reshape(prefix_out.shape)
    own_lse = own_lse.reshape(prefix_lse.shape)
    lse = torch.logaddexp(prefix_lse, own_lse)
    out = (prefix_out * (prefix_lse - lse).exp().unsqueeze(-1)
           + own_out * (own_lse - lse).exp().unsqueeze(-1)).to(query.dtype)
    return out.reshape(batch, heads, length, head_dim).transpose(1, 2).contiguous(), None


def _flash(query, key, value, mask, scale) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and its log-sum-exp per query (torch's CPU flash-attention kernel)."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, attn_mask=mask,
                                                                      scale=scale)


def _additive_mask(mask: torch.Tensor | None, length: int, keys: int, dtype, device) -> torch.Tensor:
    """``[batch or 1, 1, length, keys]`` additive mask: the model's own (already additive), a boolean one (a
    packed pass's) as 0 where a query sees a key and -inf elsewhere, or causal (the queries are the last ``length``
    keys) when ``mask`` is None."""
    if mask is None:
        queries = torch.arange(keys - length, keys, device=device)
        mask = (queries[:, None] >= torch.arange(keys, device=device)[None, :])[None, None]
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, float("-inf"))


AttentionInterface.register(NAME, cascade_attention)
AttentionMaskInterface.register(NAME, eager_mask)  # additive float masks, built once per forward pass


def can_cascade(model) -> bool:
    """Whether the prefix engine can use cascade attention: SDPA attention on CPU, every layer over the whole
    context."""
    return (model.config._attn_implementation == "sdpa" and next(model.parameters()).device.type == "cpu"
            and all(type(layer) is GrowingLayer for layer in growing_cache(model).layers))


@contextmanager
def cascading(model, shared_prefix: DynamicCache) -> Iterator[None]:
    """``model`` attending to ``shared_prefix`` before the tokens of its cache, until the block ends."""
    layers = [module for module in model.modules() if isinstance(getattr(module, "layer_idx", None), int)]
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:
        raise RuntimeError(f"{type(model).__name__} did not switch its attention implementation to {NAME}")
    for module in layers:
        module.shared_prefix = shared_prefix
    try:
        yield
    finally:
        for module in layers:
            del module.shared_prefix
        model.set_attn_implementation("sdpa")
