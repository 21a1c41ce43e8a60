"""bitsandbytes' 4-bit layers on CPU: the layer check matches the real kernel; its notice shows only for 4-bit."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from transformers import LlamaConfig, LlamaForCausalLM

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.cpu_4bit import NOTICE_LOGGER, NOTICE_PREFIX, check_4bit_layers

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKED_KERNEL = not torch.cuda.is_available() and has_avx512bf16()
# bitsandbytes looks for its optional kernel (package `kernels`, then the Hub) only where it would use it.
EMITS_NOTICE = PACKED_KERNEL and importlib.util.find_spec("kernels") is None


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def _layer(outputs: int, inputs: int) -> bnb.nn.Linear4bit:
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(inputs, outputs, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(outputs, inputs), requires_grad=False, quant_type="nf4")
    return layer.to("cpu")  # quantises


@pytest.mark.skipif(not PACKED_KERNEL, reason="bitsandbytes' packed 4-bit kernel runs only on AVX-512-BF16 CPUs")
@pytest.mark.parametrize(("outputs", "inputs"), [(32, 64), (64, 128), (192, 576), (96, 1536), (32, 32), (64, 32),
                                                 (48, 64), (40, 128), (32, 96), (64, 66)])
def test_the_layer_check_accepts_exactly_the_shapes_the_packed_cpu_kernel_runs(outputs, inputs):
    layer = _layer(outputs, inputs)
    inputs_batch = torch.randn(3, inputs)
    reference = inputs_batch @ bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).T
    try:
        check_4bit_layers(torch.nn.Sequential(layer))
        accepted = True
    except UsageError as error:
        assert f"4-bit layer 0 ({inputs} inputs, {outputs} outputs)" in str(error)
        accepted = False
    try:
        with torch.no_grad():
            output = layer.eval()(inputs_batch)  # packs the weight, then runs the kernel
    except (RuntimeError, AssertionError):
        assert not accepted, "the check let through a layer that the kernel cannot run"
    else:
        assert accepted, "the check refused a layer that the kernel runs"
        assert (output - reference).norm() / reference.norm() < 0.01  # the kernel computes in bfloat16


def test_other_bitsandbytes_messages_still_show(caplog):
    with caplog.at_level(logging.WARNING):
        logging.getLogger(NOTICE_LOGGER).warning("Some other bitsandbytes problem")
    assert "Some other bitsandbytes problem" in caplog.text


@pytest.mark.slow
def test_the_kernel_notice_shows_only_where_a_4bit_model_loads(tmp_path):
    assert (NOTICE_PREFIX in _python("-c", "import bitsandbytes").stderr) == EMITS_NOTICE
    helped = _python("scripts/finetune.py", "--help")
    assert helped.returncode == 0 and "--config FILE" in helped.stdout
    assert NOTICE_PREFIX not in helped.stderr
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    load = ("import logging; logging.basicConfig(); from finqa_dsl.models.loading import load_model; "
            f"load_model({str(tmp_path)!r}, peft=%r); load_model({str(tmp_path)!r}, peft=%r)")
    lora = _python("-c", load % ("lora", "lora"))
    assert lora.returncode == 0 and NOTICE_PREFIX not in lora.stderr
    qlora = _python("-c", load % ("qlora", "qlora"))
    assert qlora.returncode == 0, qlora.stderr
    shown = [line for line in qlora.stderr.splitlines() if NOTICE_PREFIX in line]
    assert len(shown) == (1 if EMITS_NOTICE else 0), "shown once, explained, however often 4-bit loads"
    assert all("Harmless" in line for line in shown)
