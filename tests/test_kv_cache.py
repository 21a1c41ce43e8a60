"""The growing KV cache: the same logits as transformers' DynamicCache token by token (also after rows leave the
batch and on a model with sliding-window layers), and it copies only when its spare room runs out. Stacked caches
of different lengths: every row decodes as it would alone, past the sliding window too."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from conftest import tiny_model
from transformers import DynamicCache
from transformers.cache_utils import DynamicSlidingWindowLayer

from finqa_dsl.inference.engines.kv_cache import HEADROOM, GrowingLayer, growing_cache, stacked
from finqa_dsl.inference.engines.prefix import extended, prefix_cache
from finqa_dsl.models.batching import pad


def _llama():
    return tiny_model("llama", vocab_size=97).eval()


def _gemma3():
    return tiny_model("gemma3", vocab_size=97, num_hidden_layers=4, sliding_window=8,
                      layer_types=["sliding_attention", "full_attention"] * 2).eval()


def _decode(model, cache, prompt: torch.Tensor, steps: int, keep_rows: list[int] | None = None) -> list[torch.Tensor]:
    """Logits of a left-padded prompt, then of ``steps`` greedy tokens fed one at a time; halfway through, only
    ``keep_rows`` stay in the batch (and the cache)."""
    mask = torch.ones_like(prompt)
    mask[0, :3] = 0  # the first row is left-padded
    logits = []
    with torch.inference_mode():
        output = model(input_ids=prompt, attention_mask=mask, cache=cache, use_cache=True)
        for step in range(steps):
            logits.append(output.logits[:, -1])
            token = output.logits[:, -1].argmax(-1, keepdim=True)
            if keep_rows is not None and step == steps // 2:
                cache.batch_select_indices(torch.tensor(keep_rows))
                token, mask = token[keep_rows], mask[keep_rows]
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            output = model(input_ids=token, attention_mask=mask, cache=cache, use_cache=True)
    return logits


@pytest.mark.parametrize("make_model", [_llama, _gemma3], ids=["llama", "gemma3-sliding"])
@pytest.mark.parametrize("keep_rows", [None, [0, 2]], ids=["all-rows", "rows-leave"])
def test_growing_cache_gives_the_logits_of_the_dynamic_cache(make_model, keep_rows):
    model = make_model()
    prompt = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    steps = HEADROOM + 20  # past the first spare room: one copy into a bigger buffer on the way
    expected = _decode(model, DynamicCache(config=model.config), prompt, steps, keep_rows)
    cache = growing_cache(model)
    got = _decode(model, cache, prompt, steps, keep_rows)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    kinds = {type(layer) for layer in cache.layers}
    assert GrowingLayer in kinds
    if make_model is _gemma3:  # the sliding-window layers are left as transformers builds them
        assert DynamicSlidingWindowLayer in kinds


def test_growing_layer_copies_only_when_its_room_runs_out():
    layer = GrowingLayer()
    states = torch.zeros(2, 1, 5, 4)
    layer.update(states, states)
    buffers = [layer.buffers[0]]  # 5 tokens + HEADROOM of room
    steps = 2 * HEADROOM + 2  # fills the room twice (at 5 + HEADROOM and 5 + 1 + 2 * HEADROOM tokens)
    for step in range(steps):
        token = torch.full((2, 1, 1, 4), float(step))
        keys, _ = layer.update(token, token)
        if layer.buffers[0] is not buffers[-1]:
            buffers.append(layer.buffers[0])
        assert keys.shape[-2] == 5 + step + 1 and torch.equal(keys[:, :, -1], token[:, :, 0])
    assert len(buffers) == 3
    layer.batch_select_indices(torch.tensor([1]))  # a new tensor: the next update copies it into a new buffer
    layer.update(token[:1], token[:1])
    assert layer.keys.shape == (1, 1, 5 + steps + 1, 4) and layer.buffers[0].shape[0] == 1


@pytest.mark.parametrize("make_model", [_llama, _gemma3], ids=["llama", "gemma3-sliding"])
def test_stacked_rows_decode_as_each_prompt_alone(make_model):
    """The prefix engine's batch: a shared 12-token prefix (longer than Gemma's sliding window of 8) extended by
    suffixes of 3, 10 and 2 tokens, stacked left-padded; each row's logits over 4 steps are its prompt's alone."""
    model = make_model()
    prefix = list(range(1, 13))
    prompts = [prefix + [20, 21, 22], prefix + [30] * 9 + [31], prefix + [40, 41]]
    shared = prefix_cache(model, prefix)
    cache = stacked([extended(model, copy.deepcopy(shared), prompt[len(prefix):-1]) for prompt in prompts], model)
    assert_rows_decode_alone(model, prompts, cache)


def assert_rows_decode_alone(model, prompts: list[list[int]], cache, offset: int = 0, steps: int = 4,
                             within=contextlib.nullcontext) -> None:
    """Decoding the rows of ``cache`` (every prompt but its last token, after ``offset`` tokens held elsewhere)
    gives each row the logits of its prompt alone, for ``steps`` tokens; the rows' forward passes run
    ``within()``."""
    input_ids, mask = pad([prompt[offset:] for prompt in prompts], 0, side="left")
    tokens = input_ids[:, -1:]
    with torch.inference_mode():
        for step in range(steps):
            positions = offset + mask.sum(-1, keepdim=True) - 1
            with within():
                logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                               cache=cache).logits[:, -1]
            for row, prompt in enumerate(prompts):
                alone = model(input_ids=torch.tensor([prompt + [50 + i for i in range(step)]])).logits[0, -1]
                torch.testing.assert_close(logits[row], alone, rtol=1e-4, atol=1e-4)
            tokens = torch.full((len(prompts), 1), 50 + step)
            mask = torch.cat([mask, torch.ones_like(tokens)], 1)
