"""Shared fixtures: where ../shared lives (skipping with a reason when it does not), tiny models, a work folder."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from finqa_dsl.locations import REPO_ROOT, SAMPLE_DIR, SHARED_DIR

SAMPLE = SAMPLE_DIR  # the committed synthetic FinQA sample (train/dev/test.json)
# Subprocesses (scripts, torchrun workers) import this checkout's package, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests read the read-only ../shared material in place "
                    "(set FINQA_SHARED_DIR to point elsewhere)")
    return path


@pytest.fixture(scope="session")
def real_finqa_dir() -> Path:
    """``../shared/FinQA/real``: 1,487 real FinQA examples."""
    return _require(SHARED_DIR / "FinQA" / "real")


@pytest.fixture(scope="session")
def peer_predictions_dir() -> Path:
    """``../shared/FinQA/peer_predictions``: a peer implementation's test predictions."""
    return _require(SHARED_DIR / "FinQA" / "peer_predictions")


@pytest.fixture(scope="session")
def shared_models_dir() -> Path:
    """``../shared/models``: real tokenizers and configs of the models the driver and the study used (no weights)."""
    return _require(SHARED_DIR / "models")


@pytest.fixture(scope="session")
def tiny_lora_adapter(tmp_path_factory) -> Path:
    """A random LoRA adapter (non-zero B, so it changes the function) on a tiny Llama with the default model's
    real tokenizer; its base is the sibling folder ``base``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny-lora")
    save_tiny_llama(root / "base", real_tokenizer("llama"), 64, 128)
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(root / "adapter")
    return root / "adapter"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def served_default_model():
    """`transformers serve` of the default model on loopback, offline, on CPU."""
    from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

    try:
        model = str(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model unavailable: {error}")
    port = _free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "transformers"), "serve", model,
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"transformers serve exited with {server.returncode}")
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not answer /health within 120 s")
        yield url, model
    finally:
        server.kill()
        server.wait()


# family -> (config class, model class) of transformers, for tiny_model and save_tiny_model
TINY_FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
}
# family -> the real tokenizer it is tested with: a folder under ../shared/models, or None for the default model's
FAMILY_TOKENIZERS = {"llama": None, "qwen2": "qwen2.5-0.5b-instruct", "qwen3": "qwen2.5-0.5b-instruct",
                     "mistral": "mistral-7b-instruct-v0.3", "gemma2": "gemma-3-1b-it", "gemma3": "gemma-3-1b-it"}


@functools.cache
def real_tokenizer(family: str = "llama"):
    """The real tokenizer of ``family`` (FAMILY_TOKENIZERS), loaded once; skips the test when it is absent."""
    from transformers import AutoTokenizer

    from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

    folder = FAMILY_TOKENIZERS[family]
    if folder is not None:
        return AutoTokenizer.from_pretrained(_require(SHARED_DIR / "models" / folder))
    try:
        return AutoTokenizer.from_pretrained(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model tokenizer unavailable: {error}")


def tiny_config(family: str = "llama", tokenizer=None, *, hidden_size: int = 32, intermediate_size: int = 64,
                num_hidden_layers: int = 2, num_attention_heads: int = 4, num_key_value_heads: int = 2,
                **overrides):
    """The config of a tiny random ``family`` model (TINY_FAMILIES). With ``tokenizer``: its vocabulary size and
    its bos/eos/pad ids. Families with a ``head_dim`` field get hidden_size / num_attention_heads. ``overrides``
    sets any other field of the family's config (vocab_size, tie_word_embeddings, initializer_range, ...)."""
    import transformers

    fields = dict(hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=num_hidden_layers,
                  num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads)
    if family in ("qwen3", "mistral", "gemma2", "gemma3"):
        fields["head_dim"] = hidden_size // num_attention_heads
    if tokenizer is not None:
        fields.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config_class, _ = TINY_FAMILIES[family]
    return getattr(transformers, config_class)(**{**fields, **overrides})


def tiny_model(family: str = "llama", tokenizer=None, *, seed: int = 0, **config):
    """A tiny random ``family`` model (weights drawn after ``torch.manual_seed(seed)``); ``tokenizer`` and
    ``config`` as in :func:`tiny_config`."""
    import torch
    import transformers

    _, model_class = TINY_FAMILIES[family]
    torch.manual_seed(seed)
    return getattr(transformers, model_class)(tiny_config(family, tokenizer, **config))


def save_tiny_model(folder: Path, family: str = "llama", tokenizer=None, **config) -> Path:
    """:func:`tiny_model` saved in ``folder``, with ``tokenizer`` (when given) beside it."""
    tiny_model(family, tokenizer, **config).save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return Path(folder)


def save_tiny_llama(folder: Path, tokenizer, hidden_size: int, intermediate_size: int, **config) -> Path:
    """A 2-layer random Llama with ``tokenizer`` (4 heads, 2 key/value heads, tied embeddings, 2,048 positions)
    saved in ``folder``; ``config`` overrides LlamaConfig fields."""
    return save_tiny_model(folder, "llama", tokenizer, hidden_size=hidden_size, intermediate_size=intermediate_size,
                           **{"max_position_embeddings": 2048, "tie_word_embeddings": True, **config})


@pytest.fixture
def tiny_model_factory(tmp_path_factory):
    """``make(family="llama", tokenizer="real", **config) -> folder``: a tiny random model saved in a fresh folder
    (:func:`save_tiny_model`); ``tokenizer`` is a tokenizer, None, or "real": the family's real tokenizer."""

    def make(family: str = "llama", tokenizer="real", **config) -> Path:
        if isinstance(tokenizer, str):
            tokenizer = real_tokenizer(family)
        return save_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), family, tokenizer, **config)

    return make


@pytest.fixture(scope="session")
def default_tokenizer():
    """The default model's real tokenizer (SmolLM2-135M-Instruct, with its chat template)."""
    return real_tokenizer("llama")


@pytest.fixture(scope="session")
def default_model():
    """The default model's real weights (SmolLM2-135M-Instruct, float32), for what a real model does."""
    import torch
    from transformers import AutoModelForCausalLM

    from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

    try:
        return AutoModelForCausalLM.from_pretrained(default_model_path(), dtype=torch.float32).eval()
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model unavailable: {error}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_tokenizer) -> Path:
    """The default model's real tokenizer and chat template on a tiny random Llama shaped as real models are
    (hidden sizes multiples of 64, key/value width a multiple of 32), so every backend runs it in 4-bit."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_tokenizer, 64, 128)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """``tmp_path`` as the current folder (a driver run writes its __output__ there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_scored_predictions(folder: Path, test_file: Path, target_field: str, n: int | None = None):
    """A driver run folder's test predictions and metrics hold what scoring its generations gives: every row's
    gold is its example's in ``test_file``, its scores are those of re-scoring its generation (a code row: of the
    value or error that the sandbox gave for its code), and each count and accuracy in test_metrics.json is the
    count over the rows, as are the latency statistics. Returns the rows and the metrics."""
    import json
    import statistics
    from collections import Counter

    from finqa_dsl.core import metrics as scoring
    from finqa_dsl.core.data import load_examples
    from finqa_dsl.core.python_code import NO_CODE, CodeExecution, extract_code
    from finqa_dsl.core.targets import get_target
    from finqa_dsl.runs import files as run_files

    rows = [json.loads(line) for line in (folder / run_files.TEST_PREDICTIONS).read_text().splitlines()]
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    examples = {example.id: example for example in load_examples(test_file)}
    assert rows and len({row["id"] for row in rows}) == len(rows) == metrics["n"] == (n or len(rows))
    for row in rows:
        example = examples[row["id"]]
        assert row["target_field"] == metrics["target_field"] == target_field
        assert (row["gold_program"], row["gold_exe_ans"], row["gold_answer"]) == (
            example.program, example.exe_ans, example.answer), row["id"]
        if target_field == "code":
            assert row["parsed_prediction"] == extract_code(row["generation"])
            error = row["execution_error"]
            execution = CodeExecution(None) if error == NO_CODE else CodeExecution(
                row["parsed_prediction"], row["executed_value"], error, row["execution_detail"] or "")
            assert error == NO_CODE or row["parsed_prediction"] is not None
            rescored = scoring.score_code_prediction(execution, example)
        else:
            rescored = get_target(target_field).row_fields(row["generation"], example, row["target"])
        rescored = json.loads(json.dumps(rescored))
        assert {key: row[key] for key in rescored} == rescored, row["id"]
        assert (row["failure_reason"] is None) == bool(
            row["answer_correct_tolerant"] if target_field in ("numerical", "answer") else row["execution_correct"])

    def count(key: str) -> int:
        return sum(bool(row[key]) for row in rows)

    counted = {"program": ("execution_correct", "program_correct"), "code": ("execution_correct",),
               "numerical": ("answer_correct_strict", "answer_correct_tolerant"),
               "answer": ("answer_correct_strict", "answer_correct_tolerant")}[target_field]
    for key in counted:
        accuracy = key.replace("_correct", "_accuracy")
        assert (metrics[key], metrics[accuracy]) == (count(key), count(key) / len(rows)), key
    if target_field == "code":
        for key in ("answer_correct_tolerant", "answer_correct_abs_1e3"):
            assert metrics[key.replace("_correct", "_accuracy")] == count(key) / len(rows), key
    if target_field in ("program", "code"):
        assert metrics["execution_errors"] == dict(Counter(row["execution_error"] for row in rows
                                                           if row["execution_error"] is not None))
    latencies = [row["latency_ms"] for row in rows]
    assert metrics["inference_latency_ms_avg"] == pytest.approx(statistics.fmean(latencies))
    assert metrics["inference_latency_ms_p50"] == pytest.approx(statistics.median(latencies))
    assert metrics["inference_total_seconds"] == pytest.approx(sum(row["share_ms"] for row in rows) / 1000)
    assert metrics["inference_new_tokens"] == sum(row["new_tokens"] for row in rows)
    return rows, metrics
