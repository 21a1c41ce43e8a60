"""One check of which generation settings each backend and engine honours: what one cannot honour is refused with
the driver's flag named, before any model loads, instead of being dropped."""

from __future__ import annotations

import subprocess
import sys
import types
from types import SimpleNamespace

import pytest

from finqa_dsl.core.errors import UsageError
from finqa_dsl.inference.interface import (
    ENGINE_CHOICES,
    ENGINES,
    GenerationSettings,
    check_settings,
    honours,
)

STOPS = ("<|im_end|>",)


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_every_hf_engine_takes_greedy_sampling_and_stop_strings(engine):
    check_settings("hf", GenerationSettings(engine=engine, stop_strings=STOPS, batch_size=1))
    check_settings("hf", GenerationSettings(engine=engine, do_sample=True, temperature=0.7, top_p=0.9))


@pytest.mark.parametrize("engine", ["auto", "static"])
def test_beam_search_is_taken_by_static_and_auto(engine):
    check_settings("hf", GenerationSettings(engine=engine, num_beams=4, stop_strings=STOPS))
    assert honours(engine, GenerationSettings(num_beams=4))


@pytest.mark.parametrize("engine", ["prefix", "continuous"])
def test_engines_without_beams_refuse_them_and_say_which_engines_can(engine):
    with pytest.raises(UsageError, match=rf"^--inference_engine {engine} does not do beam search "
                                         r"\(--generation_num_beams 3\): use --inference_engine auto or static\.$"):
        check_settings("hf", GenerationSettings(engine=engine, num_beams=3))
    assert not honours(engine, GenerationSettings(num_beams=3))


def test_continuous_batching_refuses_rows_leaving_every_n_tokens():
    check_settings("hf", GenerationSettings(engine="prefix", exit_every=2))
    check_settings("hf", GenerationSettings(engine="static", exit_every=0))
    with pytest.raises(UsageError, match=r"--inference_engine continuous has no rows leaving every n tokens "
                                         r"\(exit_every 2\): use --inference_engine auto or static or prefix"):
        check_settings("hf", GenerationSettings(engine="continuous", exit_every=2))


def test_vllm_takes_greedy_sampling_stop_strings_and_any_batch_size():
    check_settings("vllm", GenerationSettings(stop_strings=STOPS, batch_size=1))
    check_settings("vllm", GenerationSettings(do_sample=True, temperature=0.5, top_p=0.95, batch_size=256))


@pytest.mark.parametrize(("settings", "message"), [
    (GenerationSettings(num_beams=2), r"^--inference_backend vllm does not do beam search "
                                      r"\(--generation_num_beams 2\): use --inference_backend hf\.$"),
    (GenerationSettings(engine="prefix"), r"^--inference_engine prefix chooses an engine of --inference_backend hf"),
    (GenerationSettings(exit_every=8), r"^--inference_backend vllm has no rows leaving every n tokens"),
])
def test_vllm_refuses_what_it_lacks(settings, message):
    with pytest.raises(UsageError, match=message):
        check_settings("vllm", settings)


@pytest.mark.parametrize("backend", ["hf", "vllm"])
@pytest.mark.parametrize(("settings", "message"), [
    (GenerationSettings(temperature=0.7), r"--generation_temperature/--generation_top_p only apply with "
                                          r"--generation_do_sample true"),
    (GenerationSettings(top_p=0.9), r"only apply with --generation_do_sample true"),
    (GenerationSettings(do_sample=True, temperature=0.0), r"--generation_temperature must be > 0, got 0.0"),
    (GenerationSettings(do_sample=True, top_p=1.5), r"--generation_top_p must be in \(0, 1\], got 1.5"),
    (GenerationSettings(num_beams=0), r"--generation_num_beams must be >= 1, got 0"),
    (GenerationSettings(max_new_tokens=0), r"--generation_max_new_tokens must be >= 1, got 0"),
    (GenerationSettings(batch_size=0), r"--inference_batch_size must be >= 1, got 0"),
])
def test_values_that_no_backend_can_honour_are_refused(backend, settings, message):
    with pytest.raises(UsageError, match=message):
        check_settings(backend, settings)


def test_unknown_engine_and_backend_are_named():
    with pytest.raises(UsageError, match=r"^--inference_engine 'paged' is not one of: auto, static, prefix, "
                                         r"continuous\.$"):
        GenerationSettings(engine="paged")
    with pytest.raises(UsageError, match=r"^--inference_backend 'tgi' is not one of: hf, vllm\.$"):
        check_settings("tgi", GenerationSettings())
    assert issubclass(UsageError, ValueError)


def test_auto_runs_an_engine_that_honours_the_settings():
    from transformers import LlamaConfig, Qwen3NextConfig

    from finqa_dsl.inference.hf_backend import GENERATE, resolve_engine

    assert set(GENERATE) == set(ENGINES)  # one registry: every declared engine is a module with generate()
    llama = SimpleNamespace(config=LlamaConfig(num_hidden_layers=2))
    linear_attention = SimpleNamespace(config=Qwen3NextConfig(num_hidden_layers=4))  # caches cannot be stacked
    assert resolve_engine(GenerationSettings(), llama.config) == "prefix"
    assert resolve_engine(GenerationSettings(do_sample=True), llama.config) == "prefix"
    assert resolve_engine(GenerationSettings(num_beams=2), llama.config) == "static"
    assert resolve_engine(GenerationSettings(), linear_attention.config) == "static"
    for settings in (GenerationSettings(), GenerationSettings(num_beams=2), GenerationSettings(exit_every=0)):
        assert honours(resolve_engine(settings, llama.config), settings)


def test_the_vllm_backend_passes_stop_strings_and_batch_size_to_vllm(monkeypatch):
    """vLLM is not installed here: stand-in ``vllm`` modules record what the backend asks of it, with vLLM's
    names (``SamplingParams``; ``StructuredOutputsParams(grammar=...)`` for --constrained_decoding)."""
    from finqa_dsl.inference.interface import BATCH_WALL_TIME, PER_EXAMPLE
    from finqa_dsl.inference.vllm_backend import VLLMBackend

    params, calls = [], []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(
        SamplingParams=lambda **kwargs: params.append(kwargs) or kwargs))
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", types.SimpleNamespace(
        StructuredOutputsParams=lambda **kwargs: ("structured", kwargs)))

    class LLM:
        def generate(self, prompts, sampling, lora_request=None, use_tqdm=True):
            calls.append(len(prompts))
            assert len(sampling) == len(prompts), "one SamplingParams per prompt"
            return [SimpleNamespace(outputs=[SimpleNamespace(text=" 1 <|im_end|>", token_ids=[5, 6],
                                                             cumulative_logprob=-1.5)])
                    for _ in prompts]

    class Tokenizer:  # what encode_prompt reads of a tokenizer with a chat template
        chat_template = "{{ messages }}"

        def __call__(self, texts, add_special_tokens):
            return {"input_ids": [[1, 2]] * len(texts)}

    backend = object.__new__(VLLMBackend)
    backend.tokenizer, backend.llm, backend.lora, backend.stops = Tokenizer(), LLM(), None, [7]
    records = [SimpleNamespace(id=str(i), prompt=f"q{i}", grammar=f'start: "{i}"') for i in range(5)]
    out = list(backend(records, GenerationSettings(batch_size=2, stop_strings=STOPS)))
    assert calls == [2, 2, 1]
    assert params[0]["stop"] == list(STOPS) and params[0]["include_stop_str_in_output"] is True
    assert params[0]["stop_token_ids"] == [7] and params[0]["temperature"] == 0.0
    assert params[0]["structured_outputs"] is None and {g.logprob for _, g in out} == {-1.5}
    params.clear()
    list(backend(records, GenerationSettings(batch_size=2, constrained=True)))
    assert [p["structured_outputs"] for p in params] == [("structured", {"grammar": r.grammar}) for r in records]
    assert {g.latency_mode for _, g in out} == {BATCH_WALL_TIME} and [g.batch_size for _, g in out] == [2, 2, 2, 2, 1]
    single = list(backend(records[:2], GenerationSettings(batch_size=1)))
    assert {g.latency_mode for _, g in single} == {PER_EXAMPLE}
    with pytest.raises(UsageError, match="does not do beam search"):
        list(backend(records, GenerationSettings(num_beams=2)))


def test_the_check_imports_no_torch():
    code = ("import sys\nimport finqa_dsl.inference.interface\n"
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
