"""Shared fixtures: where ../shared lives (skipping with a reason when it does not), tiny models, a work folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("FINQA_SHARED_DIR", REPO_ROOT.parent / "shared"))
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
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

    try:
        tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model tokenizer unavailable: {error}")
    root = tmp_path_factory.mktemp("tiny-lora")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
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


def save_tiny_llama(folder: Path, tokenizer, hidden_size: int, intermediate_size: int, **config) -> Path:
    """A 2-layer random Llama with ``tokenizer`` (4 heads, 2 key/value heads) saved in ``folder``; ``config``
    overrides LlamaConfig fields."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, **config)
    LlamaForCausalLM(llama).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def default_tokenizer():
    """The default model's real tokenizer (SmolLM2-135M-Instruct, with its chat template)."""
    from transformers import AutoTokenizer

    from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

    try:
        return AutoTokenizer.from_pretrained(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model tokenizer unavailable: {error}")


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
