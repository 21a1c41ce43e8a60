"""KV caches for batched generation: one that grows into spare room instead of being copied at every token, and
batches stacked from rows of different lengths.

transformers' ``DynamicLayer`` appends each step's keys and values with ``torch.cat``, which copies the layer's
whole cache once per generated token: on the 2-core CPU that copy was 17% of a 32-row decode step over 350
cached tokens and 28% over 850 (BENCHMARKS.md). :class:`GrowingLayer` keeps its keys and values as views of
buffers with room for :data:`HEADROOM` more tokens and writes new tokens in place; it copies only when the room
is used up or when the batch changed (rows left, or were repeated), so greedy outputs are unchanged (the same
values, in the same order). Sliding-window layers stay as transformers builds them.

:func:`stacked` puts caches of different lengths into one batch, each row left-padded with zeros, which is the
layout of a left-padded batch: padding first, then every token of the row in order, so a sliding window still
covers a row's last tokens. The batch's attention mask must hide the padding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

HEADROOM = 64  # tokens of spare room a layer allocates whenever it has to copy


class GrowingLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose ``keys`` and ``values`` are views of buffers with spare room."""

    buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.get_seq_length(), key_states.shape[-2]
        if not self._room_for(new):
            self.buffers = tuple(states.new_empty((*states.shape[:2], length + new + HEADROOM, states.shape[-1]))
                                 for states in (key_states, value_states))
            if length:
                self.buffers[0][:, :, :length] = self.keys
                self.buffers[1][:, :, :length] = self.values
        keys, values = self.buffers
        keys[:, :, length:length + new] = key_states
        values[:, :, length:length + new] = value_states
        self.keys, self.values = keys[:, :, :length + new], values[:, :, :length + new]
        return self.keys, self.values

    def _room_for(self, new: int) -> bool:
        """Whether ``keys`` is still the start of the buffer (no reorder, select or repeat replaced it) and
        ``new`` more tokens fit after it."""
        if self.buffers is None or self.keys.numel() == 0:
            return False
        keys = self.buffers[0]
        return self.keys.data_ptr() == keys.data_ptr() and self.keys.shape[-2] + new <= keys.shape[-2]


def growing_cache(model) -> DynamicCache:
    """An empty :class:`DynamicCache` for ``model`` whose full-attention layers are :class:`GrowingLayer`."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


STACKABLE = (GrowingLayer, DynamicSlidingWindowLayer)  # the layer kinds :func:`stacked` can batch


def can_stack(config) -> bool:
    """Whether :func:`stacked` can batch the caches of a model of this config (full-attention and sliding-window
    layers only): decided from the architecture, before any weights load."""
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in DynamicCache(config=config).layers)


def stacked(caches: list[DynamicCache], model, length: int | None = None) -> DynamicCache:
    """One cache holding the rows of ``caches`` (each of any batch size and length) in order, right-aligned in
    ``length`` tokens (default: the longest): shorter rows are left-padded with zeros, leading tokens beyond
    ``length`` are cut (the caller makes sure that they are padding in every row)."""
    length = length if length is not None else max(cache.get_seq_length() for cache in caches)
    return _rows(model, length, lambda index: [(cache.layers[index].keys, cache.layers[index].values)
                                               for cache in caches])


def unpacked(packs: list[tuple[DynamicCache, list[int]]], model) -> DynamicCache:
    """One row per sequence of the ``packs``, in order: each pack a batch-1 cache holding sequences of the given
    lengths one after another. Rows are right-aligned and left-padded with zeros as by :func:`stacked`."""

    def parts(index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys[:, :, end - n:end], layer.values[:, :, end - n:end])
                for layer, lengths in ((cache.layers[index], lengths) for cache, lengths in packs)
                for n, end in zip(lengths, itertools.accumulate(lengths), strict=True)]

    return _rows(model, max(n for _, lengths in packs for n in lengths), parts)


def _rows(model, length: int, parts: Callable[[int], list[tuple[torch.Tensor, torch.Tensor]]]) -> DynamicCache:
    """A cache whose layer ``index`` holds the ``(keys, values)`` of ``parts(index)`` batched, every part's last
    ``length`` tokens right-aligned."""
    batch = growing_cache(model)
    for index, layer in enumerate(batch.layers):
        if type(layer) not in STACKABLE:
            raise ValueError(f"cannot batch KV caches with {type(layer).__name__} layers: use the static engine")
        keys, values = zip(*parts(index), strict=True)
        width = min(length, layer.sliding_window - 1) if isinstance(layer, DynamicSlidingWindowLayer) else length
        layer.update(_right_aligned(list(keys), width), _right_aligned(list(values), width))
        if isinstance(layer, DynamicSlidingWindowLayer):  # it holds the last sliding_window - 1 of `length` tokens
            layer.cumulative_length = length
    return batch


def _right_aligned(states: list[torch.Tensor], width: int) -> torch.Tensor:
    """``[batch, heads, tokens, head_dim]`` tensors concatenated along the batch, each one's last ``width`` tokens
    right-aligned (zeros before shorter ones)."""
    rows = states[0].new_zeros((sum(part.shape[0] for part in states), *states[0].shape[1:2], width,
                                states[0].shape[-1]))
    start = 0
    for part in states:
        kept = min(width, part.shape[-2])
        rows[start:start + part.shape[0], :, width - kept:] = part[:, :, part.shape[-2] - kept:]
        start += part.shape[0]
    return rows
