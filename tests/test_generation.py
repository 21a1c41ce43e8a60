"""Batched generation on a tiny random Llama with the real Qwen2.5 tokenizer: left padding, stops, resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_model
from transformers import AutoTokenizer, LlamaForCausalLM

from finqa_dsl.core.chat import IGNORE_INDEX, encode_for_training
from finqa_dsl.core.io import read_jsonl_tolerant
from finqa_dsl.inference.engines.static import generate, generation_config
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.interface import BATCH_WALL_TIME, PER_EXAMPLE, GenerationSettings
from finqa_dsl.inference.predictions_file import generate_to_file
from finqa_dsl.inference.stopping import stop_token_ids

QUESTIONS = [
    "what is the net change in net revenue during 2015 for entergy corporation?",
    "sum?",
    "what percentage of total facilities as measured in square feet are leased, given the leased facilities "
    "of the united states and of other countries in 2015 and 2016?",
    "what was the average payment volume per transaction for american express?",
    "is 5 > 3?",
]


@pytest.fixture(scope="module")
def tokenizer(shared_models_dir):
    return AutoTokenizer.from_pretrained(shared_models_dir / "qwen2.5-0.5b-instruct")


@pytest.fixture(scope="module")
def records(tokenizer):
    def prompt(question):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)

    return [SimpleNamespace(id=f"q{i}", question=q, prompt=prompt(q), target="add(1, 2)")
            for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("llama", vocab_size=len(tokenizer), initializer_range=0.5)


def _generate(model, tokenizer, records, **settings):
    return {record.id: generation for record, generation in
            generate(model, tokenizer, records, GenerationSettings(max_new_tokens=6, **settings))}


def test_batched_greedy_equals_one_by_one(model, tokenizer, records):
    one_by_one = _generate(model, tokenizer, records, batch_size=1)
    batched = _generate(model, tokenizer, records, batch_size=3)
    assert {k: (g.text, g.new_tokens) for k, g in batched.items()} == \
           {k: (g.text, g.new_tokens) for k, g in one_by_one.items()}
    assert all(g.new_tokens == 6 and g.text for g in batched.values())


def test_beam_search_batched_equals_one_by_one(model, tokenizer, records):
    one_by_one = _generate(model, tokenizer, records[:3], batch_size=1, num_beams=2)
    batched = _generate(model, tokenizer, records[:3], batch_size=3, num_beams=2)
    assert {k: g.text for k, g in batched.items()} == {k: g.text for k, g in one_by_one.items()}


def test_latency_fields_say_what_they_measure(model, tokenizer, records):
    single = _generate(model, tokenizer, records, batch_size=1)
    assert all(g.latency_mode == PER_EXAMPLE and g.batch_size == 1 for g in single.values())
    assert all(g.latency_ms > 0 for g in single.values())
    batched = _generate(model, tokenizer, records, batch_size=3)
    assert all(g.latency_mode == BATCH_WALL_TIME and g.latency_ms > 0 for g in batched.values())
    assert sorted(g.batch_size for g in batched.values()) == [2, 2, 3, 3, 3]
    batch_times = {g.latency_ms for g in batched.values()}
    assert len(batch_times) == 2  # all rows of a batch left it together
    assert sum(g.share_ms for g in batched.values()) == pytest.approx(sum(batch_times))
    assert [g.share_ms for g in single.values()] == [g.latency_ms for g in single.values()]


def test_prompts_are_encoded_as_in_training_and_batches_go_longest_first(model, tokenizer, records,
                                                                         monkeypatch):
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append((kwargs["input_ids"], kwargs["attention_mask"]))
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    settings = GenerationSettings(max_new_tokens=2, batch_size=2)
    order = [record.id for record, _ in generate(model, tokenizer, records, settings)]
    prompt_ids = {r.id: _training_prompt_ids(tokenizer, r) for r in records}
    seen = [ids[mask.bool()].tolist() for input_ids, masks in calls
            for ids, mask in zip(input_ids, masks, strict=True)]
    assert seen == [prompt_ids[i] for i in order]
    assert [len(ids) for ids in seen] == sorted((len(ids) for ids in seen), reverse=True)
    assert all(masks[:, -1].all() for _, masks in calls)  # left padding: every row ends at its prompt's end


def _training_prompt_ids(tokenizer, record):
    input_ids, labels = encode_for_training(tokenizer, record.prompt, record.target)
    return input_ids[:labels.count(IGNORE_INDEX)]


def _model_scoring_only(tokenizer, weights: dict[str, float]) -> LlamaForCausalLM:
    """A random Llama whose logits are 0 except ``weight * h0`` for the given tokens (h0: the first hidden
    unit), so that greedy decoding picks among them by the sign of h0."""
    model = tiny_model("llama", vocab_size=len(tokenizer), num_hidden_layers=1, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        for token, weight in weights.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = weight
    return model


def test_generation_stops_at_end_of_turn_and_at_model_eos(tokenizer, records):
    """Whichever of <|im_end|> (+h0) and <|endoftext|> (-h0) the first step picks, generation stops there."""
    model = _model_scoring_only(tokenizer, {"<|im_end|>": 1.0, "<|endoftext|>": -1.0})
    end_of_turn, end_of_text = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    model.generation_config.eos_token_id = end_of_text
    assert stop_token_ids(model, tokenizer) == [end_of_turn, end_of_text]
    results = _generate(model, tokenizer, records, batch_size=2)
    assert all((g.text, g.new_tokens) == ("", 1) for g in results.values())


def test_decoding_follows_the_settings_not_the_models_sampling_defaults(tokenizer, records):
    """Greedy picks "a" (or "c") at every step; the repetition penalty or sampling of the model's own
    generation_config, if inherited, would bring in the runners-up "b" and "d"."""
    model = _model_scoring_only(tokenizer, {"a": 2.0, "b": 1.0, "c": -2.0, "d": -1.0})
    model.generation_config.update(do_sample=True, top_k=4, temperature=5.0, repetition_penalty=3.0)
    texts = [g.text for g in _generate(model, tokenizer, records, batch_size=5).values()]
    assert all(len(text) == 6 and set(text) <= {"a", "c"} for text in texts), texts
    sampling = GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9)
    config = generation_config(model, tokenizer, sampling)
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.7, 0.9, 0)
    assert generation_config(model, tokenizer, GenerationSettings()).temperature is None


def test_generate_to_file_streams_and_resumes_skipping_finished_ids(tmp_path, model, tokenizer, records):
    path = tmp_path / "test_predictions.jsonl"
    settings = GenerationSettings(max_new_tokens=3, batch_size=2)
    calls = []

    def annotate(record, text):
        calls.append(record.id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run is interrupted while the third prediction is being scored
        return {"executed": len(text)}

    with pytest.raises(KeyboardInterrupt):
        generate_to_file(HFBackend(model, tokenizer), records, path, settings=settings, annotate=annotate)
    written = read_jsonl_tolerant(path)
    assert [row["id"] for row in written] == calls[:2]
    with open(path, "a", encoding="utf-8") as handle:  # a crash in the middle of writing a line
        handle.write('{"id": "q4", "generation": "tor')

    stats = generate_to_file(HFBackend(model, tokenizer), records, path, settings=settings, annotate=annotate)
    rows = read_jsonl_tolerant(path)
    assert (stats.generated, stats.skipped) == (3, 2) and stats.seconds > 0 and stats.new_tokens == 9
    assert sorted(row["id"] for row in rows) == sorted(r.id for r in records)
    assert all(json.loads(line) for line in path.read_text().splitlines())  # the torn line is gone
    assert set(rows[-1]) == {"id", "question", "prompt", "generation", "new_tokens", "latency_ms",
                             "latency_mode", "batch_size", "share_ms", "sample", "logprob", "executed"}

    again = generate_to_file(HFBackend(model, tokenizer), records, path, settings=settings)
    assert (again.generated, again.skipped) == (0, 5)

