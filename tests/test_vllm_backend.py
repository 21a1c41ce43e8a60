"""The vLLM backend refuses to start, with one clear line, where it cannot run (no vLLM, no GPU)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from finqa_dsl.core.errors import UsageError
from finqa_dsl.inference.vllm_backend import VLLMBackend, check_vllm_available


@pytest.mark.skipif(torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None,
                    reason="vLLM and a GPU are both here: the backend can run")
def test_without_vllm_or_a_gpu_the_backend_says_what_is_missing():
    expected = "pip install -e '.\\[vllm\\]'" if importlib.util.find_spec("vllm") is None else "needs an NVIDIA GPU"
    with pytest.raises(UsageError, match=expected):
        check_vllm_available()
    with pytest.raises(UsageError, match="--inference_backend hf"):
        VLLMBackend("any/model", tokenizer=None)
