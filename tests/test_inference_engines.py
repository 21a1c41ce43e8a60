"""Inference engines (static, shared-prefix cache, continuous batching): identical greedy outputs, the shared
prefix encoded once, early stop, the predictions file and resume, engine selection.

A tiny random Llama with the real default-model tokenizer and chat template; few-shot prompts built by the
project's own prompt builder, so their shared prefix (instruction + exemplars) is the real one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_model
from transformers import LlamaForCausalLM, Qwen3NextConfig

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.dsl import END_OF_TURN_MARKERS, clean_generation
from finqa_dsl.core.io import read_jsonl_tolerant
from finqa_dsl.core.prompts import build_prompt_records, select_few_shot
from finqa_dsl.core.targets import get_target
from finqa_dsl.inference.engines.prefix import shared_prefix_length
from finqa_dsl.inference.hf_backend import HFBackend, resolve_engine
from finqa_dsl.inference.interface import BATCH_WALL_TIME, IN_FLIGHT, GenerationSettings
from finqa_dsl.inference.predictions_file import generate_to_file
from finqa_dsl.inference.stopping import StopRule
from finqa_dsl.models.default_model import default_model_path
from tests.test_finetune_e2e import SAMPLE


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", vocab_size=len(tokenizer), initializer_range=0.5, max_position_embeddings=4096,
                      eos_token_id=tokenizer.eos_token_id).eval()


def _records(tokenizer, k: int, n: int = 5):
    few_shot = select_few_shot(load_examples(SAMPLE / "train.json"), k, target_field="program",
                               context_config=ContextConfig()) if k else []
    records, _ = build_prompt_records(load_examples(SAMPLE / "test.json")[:n], target_field="program",
                                      context_config=ContextConfig(), tokenizer=tokenizer, few_shot=few_shot)
    return records


@pytest.fixture(scope="module")
def zero_shot(tokenizer):
    return _records(tokenizer, 0)


@pytest.fixture(scope="module")
def few_shot(tokenizer):
    return _records(tokenizer, 2)


def _run(model, tokenizer, records, **settings):
    settings = GenerationSettings(**{"max_new_tokens": 8, **settings})
    return {record.id: generation for record, generation in HFBackend(model, tokenizer)(records, settings)}


def _outputs(results):
    return {key: (g.text, g.new_tokens) for key, g in results.items()}


@pytest.mark.parametrize("shots", ["zero_shot", pytest.param("few_shot", marks=pytest.mark.slow)])
def test_every_engine_gives_the_one_by_one_greedy_outputs(request, model, tokenizer, shots):
    records = request.getfixturevalue(shots)
    one_by_one = _outputs(_run(model, tokenizer, records, engine="static", batch_size=1))
    assert len({text for text, _ in one_by_one.values()}) > 1, "prompts must lead to different generations"
    for engine in ("static", "prefix", "continuous"):
        assert _outputs(_run(model, tokenizer, records, engine=engine, batch_size=3)) == one_by_one, engine


@pytest.mark.slow
def test_every_engine_gives_the_one_by_one_greedy_outputs_of_the_real_default_model(tokenizer, few_shot):
    """SmolLM2-135M-Instruct's real weights (float32) on real-format few-shot prompts."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(default_model_path(), dtype=torch.float32).eval()
    records = few_shot[:3]
    one_by_one = _outputs(_run(model, tokenizer, records, engine="static", batch_size=1, max_new_tokens=12))
    for engine in ("prefix", "continuous"):
        assert _outputs(_run(model, tokenizer, records, engine=engine, max_new_tokens=12)) == one_by_one, engine


def test_prefix_engine_on_a_sliding_window_model_gives_the_one_by_one_outputs(tokenizer, zero_shot):
    """Gemma-3's layout with a sliding window of 8 tokens, far shorter than the prompts: no cascade attention
    (:func:`finqa_dsl.inference.engines.cascade_attention.can_cascade`), the prefix is copied into every row."""
    model = tiny_model("gemma3", vocab_size=len(tokenizer), sliding_window=8,
                       layer_types=["sliding_attention", "full_attention"], initializer_range=0.5).eval()
    one_by_one = _outputs(_run(model, tokenizer, zero_shot, engine="static", batch_size=1))
    assert len({text for text, _ in one_by_one.values()}) > 1, "prompts must lead to different generations"
    assert _outputs(_run(model, tokenizer, zero_shot, engine="prefix", batch_size=3)) == one_by_one


@pytest.mark.parametrize("engine", ["static", "prefix"])
def test_finished_rows_leave_the_batch_with_the_same_outputs(model, tokenizer, zero_shot, engine):
    """A stop string that some generations reach early: with rows leaving every 2 tokens the outputs are those of
    one uninterrupted call and of one prompt at a time, fewer tokens go through the model, and a row that stopped
    early reports a shorter latency than a batch-mate that ran to max_new_tokens."""
    settings = {"max_new_tokens": 24, "stop_strings": (_early_stop(model, tokenizer, zero_shot),),
                "batch_size": len(zero_shot)}
    one_by_one = _outputs(_run(model, tokenizer, zero_shot, engine="static", **{**settings, "batch_size": 1}))
    embedded = {}
    for exit_every in (0, 2):
        counted, handle = _count_embedded_tokens(model)
        results = _run(model, tokenizer, zero_shot, engine=engine, exit_every=exit_every, **settings)
        handle.remove()
        embedded[exit_every] = sum(counted)
        assert _outputs(results) == one_by_one, exit_every
    assert embedded[2] < embedded[0]
    early = [g.latency_ms for g in results.values() if g.new_tokens < 24]
    full = [g.latency_ms for g in results.values() if g.new_tokens == 24]
    assert early and full and max(early) < min(full)
    assert sum(g.share_ms for g in results.values()) == pytest.approx(max(full))  # the batch's wall time


def _early_stop(model, tokenizer, records) -> str:
    """A piece of text that some of the 24-token generations contain, and others not."""
    unstopped = [g.text for g in _run(model, tokenizer, records, engine="static", max_new_tokens=24).values()]
    return next(piece for text in unstopped for piece in (text[i:i + 5] for i in range(0, len(text) - 5, 3))
                if 2 <= sum(piece in t for t in unstopped) < len(unstopped) and piece.strip() == piece)


def test_prefix_engine_admits_waiting_prompts_as_rows_leave(model, tokenizer, zero_shot):
    """5 prompts, 2 at a time, rows leaving every 2 tokens at a stop string that some reach early: a waiting
    prompt joins the running rows as soon as one leaves, so (unlike the static engine's batches) no decode step
    runs with a free place while prompts wait, and the outputs are still the one-by-one ones."""
    settings = {"max_new_tokens": 24, "stop_strings": (_early_stop(model, tokenizer, zero_shot),), "exit_every": 2}
    one_by_one = _outputs(_run(model, tokenizer, zero_shot, engine="static", batch_size=1, **settings))
    for engine, joins in (("static", False), ("prefix", True)):
        shapes = []
        handle = model.register_forward_pre_hook(lambda _m, _a, kwargs, shapes=shapes: shapes.append(
            kwargs["input_ids"].shape), with_kwargs=True)
        results = _run(model, tokenizer, zero_shot, engine=engine, batch_size=2, **settings)
        handle.remove()
        assert _outputs(results) == one_by_one, engine
        last_prompt = max(i for i, shape in enumerate(shapes) if shape[1] > 1)  # the last prefill or suffix
        half_empty = [shape for shape in shapes[:last_prompt] if shape[1] == 1 and shape[0] < 2]
        assert (not half_empty) == joins, engine


def _count_embedded_tokens(model):
    counted = []
    handle = model.get_input_embeddings().register_forward_hook(lambda _m, args, _o: counted.append(args[0].numel()))
    return counted, handle


def test_the_shared_prefix_goes_through_the_model_once(model, tokenizer, few_shot):
    """One token generated (prefill only), one prompt per batch (no padding): the static engine embeds every
    prompt whole, the prefix engine the shared prefix once and then each prompt's own suffix."""
    lengths = [len(tokenizer(r.prompt, add_special_tokens=False)["input_ids"]) for r in few_shot]
    prefix = shared_prefix_length([tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in few_shot])
    assert prefix > 0.6 * min(lengths), "instruction + exemplars make most of a few-shot prompt"
    embedded = {}
    for engine in ("static", "prefix"):
        counted, handle = _count_embedded_tokens(model)
        _run(model, tokenizer, few_shot, engine=engine, batch_size=1, max_new_tokens=1)
        handle.remove()
        embedded[engine] = sum(counted)
    assert embedded["static"] == sum(lengths)
    assert embedded["prefix"] == prefix + sum(n - prefix for n in lengths)


def test_shared_prefix_length_leaves_a_token_to_encode():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[7, 8]]) == 1
    assert shared_prefix_length([[1], [2]]) == shared_prefix_length([]) == 0


@pytest.mark.parametrize("engine", ["static", "prefix", "continuous"])
def test_generation_stops_right_after_a_stop_string(tokenizer, zero_shot, engine):
    """The model writes "a" forever; with the stop string "aaa" every engine returns "aaa" (3 tokens), and the
    batched engines stop decoding there instead of at max_new_tokens."""
    model = _always_writes_a(tokenizer)
    steps = []
    handle = model.register_forward_hook(lambda *_: steps.append(1))
    results = _run(model, tokenizer, zero_shot[:2], engine=engine, batch_size=2, max_new_tokens=20,
                   stop_strings=("aaa",))
    handle.remove()
    assert {(g.text, g.new_tokens) for g in results.values()} == {("aaa", 3)}
    if engine != "continuous":  # the manager stops on tokens only; its tokens are cut by the same rule
        # prefix: + one forward pass for the shared prefix and one for both prompts' suffixes, packed
        assert len(steps) == 3 + (engine == "prefix") * (1 + 1)
    unstopped = _run(model, tokenizer, zero_shot[:1], engine=engine, max_new_tokens=5)
    assert [(g.text, g.new_tokens) for g in unstopped.values()] == [("aaaaa", 5)]


def _always_writes_a(tokenizer) -> LlamaForCausalLM:
    """A random Llama whose output layer adds 100 to the logit of "a": greedy writes "a" at every step."""
    model = tiny_model("llama", vocab_size=len(tokenizer), num_hidden_layers=1).eval()
    bias = torch.zeros(len(tokenizer))
    bias[tokenizer.convert_tokens_to_ids("a")] = 100.0
    model.lm_head.register_forward_hook(lambda _module, _args, logits: logits + bias)
    return model


def test_program_stop_strings_change_nothing_that_is_parsed(tokenizer):
    """The program target stops at end-of-turn markers written as text; clean_generation cuts there anyway."""
    rule = StopRule(token_ids=(tokenizer.eos_token_id,), strings=get_target("program").stop_strings)
    assert set(rule.strings) == set(END_OF_TURN_MARKERS)
    for marker in END_OF_TURN_MARKERS:
        written = f"subtract(5829, 5735), divide(#0, 5735) EOF{marker}\nadd(1, 2) and more text"
        ids = tokenizer(written, add_special_tokens=False)["input_ids"]
        kept = tokenizer.decode(ids[:rule.length(ids, tokenizer)], skip_special_tokens=True)
        assert len(kept) < len(tokenizer.decode(ids, skip_special_tokens=True))
        assert clean_generation(kept) == clean_generation(written) == "subtract(5829, 5735), divide(#0, 5735)"
    plain = tokenizer("add(1, 2)", add_special_tokens=False)["input_ids"]
    assert rule.length([*plain, tokenizer.eos_token_id, 5, 6], tokenizer) == len(plain) + 1


@pytest.mark.parametrize(("engine", "mode"),
                         [("static", BATCH_WALL_TIME), ("prefix", IN_FLIGHT), ("continuous", IN_FLIGHT)])
def test_predictions_file_and_resume_are_the_same_with_every_engine(tmp_path, model, tokenizer, zero_shot,
                                                                    engine, mode):
    path = tmp_path / "test_predictions.jsonl"
    settings = GenerationSettings(max_new_tokens=3, batch_size=2, engine=engine)
    backend = HFBackend(model, tokenizer)
    first = generate_to_file(backend, zero_shot[:2], path, settings=settings)
    stats = generate_to_file(backend, zero_shot, path, settings=settings)
    rows = read_jsonl_tolerant(path)
    assert (first.generated, stats.generated, stats.skipped) == (2, 3, 2)
    assert sorted(row["id"] for row in rows) == sorted(r.id for r in zero_shot)
    assert all(set(row) == {"id", "sample", "question", "prompt", "generation", "new_tokens", "latency_ms",
                            "latency_mode", "batch_size", "share_ms", "logprob"} for row in rows)
    assert all(row["sample"] == 0 and row["logprob"] < 0 for row in rows)
    assert all(row["latency_mode"] == mode and row["latency_ms"] > 0 and row["batch_size"] in (1, 2) for row in rows)
    static = _outputs(_run(model, tokenizer, zero_shot, engine="static", max_new_tokens=3))
    assert {row["id"]: (row["generation"], row["new_tokens"]) for row in rows} == static


def test_engine_choice_and_impossible_combinations(model):
    assert resolve_engine(GenerationSettings(), model.config) == "prefix"
    assert resolve_engine(GenerationSettings(num_beams=2), model.config) == "static"
    assert resolve_engine(GenerationSettings(engine="continuous", do_sample=True), model.config) == "continuous"
    linear_attention = SimpleNamespace(config=Qwen3NextConfig(num_hidden_layers=4))  # its caches cannot be stacked
    assert resolve_engine(GenerationSettings(), linear_attention.config) == "static"
    for engine in ("prefix", "continuous"):  # refused by the backend, not dropped (tests/test_settings_check.py)
        with pytest.raises(ValueError, match=f"--inference_engine {engine} does not do beam search"):
            list(HFBackend(model, None)([], GenerationSettings(engine=engine, num_beams=2)))
    with pytest.raises(ValueError, match="'paged' is not one of: auto, static, prefix, continuous"):
        GenerationSettings(engine="paged")
