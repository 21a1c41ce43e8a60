"""Cascade attention over a shared prefix: rows that hold only their own tokens decode as each prompt alone, with
suffixes encoded packed (across several packs too); which models use it; the model is left as it was."""

from __future__ import annotations

import pytest
import torch

from finqa_dsl.inference.engines import prefix as prefix_engine
from finqa_dsl.inference.engines.cascade_attention import NAME, can_cascade, cascading
from tests.test_kv_cache import _gemma3, _llama, assert_rows_decode_alone


@pytest.mark.parametrize("pack_tokens", [512, 8], ids=["one-pack", "several-packs"])
def test_rows_after_a_shared_prefix_decode_as_each_prompt_alone(monkeypatch, pack_tokens):
    """A 12-token prefix and suffixes of 3, 10 and 2 tokens: the rows' cache holds the suffixes only (all but
    their last token), and under cascade attention each row's logits over 4 steps are its prompt's alone."""
    monkeypatch.setattr(prefix_engine, "PACK_TOKENS", pack_tokens)  # 8: the 9-token suffix is a pack of its own
    model = _llama()
    prefix = list(range(1, 13))
    prompts = [prefix + [20, 21, 22], prefix + [30] * 9 + [31], prefix + [40, 41]]
    shared = prefix_engine.prefix_cache(model, prefix)
    with cascading(model, shared):
        cache = prefix_engine.packed_suffixes(model, shared, [prompt[len(prefix):-1] for prompt in prompts])
    assert cache.get_seq_length() == 9 and cache.layers[0].keys.shape[0] == 3
    assert_rows_decode_alone(model, prompts, cache, offset=len(prefix), within=lambda: cascading(model, shared))


def test_cascade_is_for_sdpa_models_that_attend_to_the_whole_context():
    assert can_cascade(_llama())
    assert not can_cascade(_gemma3())  # sliding-window layers: the prefix engine copies the prefix into the rows
    eager = _llama()
    eager.set_attn_implementation("eager")
    assert not can_cascade(eager)


def test_cascading_leaves_the_model_as_it_was():
    model = _llama()
    shared = prefix_engine.prefix_cache(model, [1, 2, 3])
    tokens = torch.tensor([[4, 5, 6]])
    with torch.inference_mode():
        before = model(input_ids=tokens).logits
        with cascading(model, shared):
            assert model.config._attn_implementation == NAME
            attending = model(input_ids=tokens, position_ids=torch.tensor([[3, 4, 5]])).logits
        after = model(input_ids=tokens).logits
        alone = model(input_ids=torch.tensor([[1, 2, 3, 4, 5, 6]])).logits[:, 3:]
    torch.testing.assert_close(attending, alone, rtol=1e-4, atol=1e-4)  # inside: the tokens follow the prefix
    assert model.config._attn_implementation == "sdpa" and torch.equal(before, after)
    assert not any(hasattr(module, "shared_prefix") for module in model.modules())
