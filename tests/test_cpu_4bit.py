"""bitsandbytes' 4-bit layers on CPU: the layer check matches the real kernel; no command asks the Hub for
bitsandbytes' optional kernel, and its notice shows, explained, only where a 4-bit model loads.

The rule, by CPU kind: on a CPU with AVX-512-BF16 (AMD EPYC Zen 4 and later, Intel Xeon with AVX-512-BF16 and
with AMX), importing bitsandbytes looks for an optional CPU kernel (the Hub, through the `kernels` package)
and logs a notice when it finds none; on other CPUs (AVX2) it looks for nothing. The CPU's kind is read from
/proc/cpuinfo, not from bitsandbytes. The Hub is a recording server on loopback (``HF_ENDPOINT``), so a lookup
is counted, not guessed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from conftest import REPO_ROOT, save_tiny_model
from loopback import LoopbackServer, QuietHandler

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.cpu_4bit import NOTICE_PREFIX, check_4bit_layers

PACKED_KERNEL = not torch.cuda.is_available() and has_avx512bf16()
CPU_FLAGS = set(Path("/proc/cpuinfo").read_text().split("flags")[1].splitlines()[0].split()) \
    if Path("/proc/cpuinfo").exists() else set()
LOOKS_FOR_OPTIONAL_KERNEL = not torch.cuda.is_available() and "avx512_bf16" in CPU_FLAGS


class _RecordingHub(QuietHandler):
    """Answers every request with 404 and records its path."""

    paths: list[str] = []

    def _answer(self) -> None:
        self.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _answer


@pytest.fixture
def hub():
    """A loopback Hugging Face Hub that records what it is asked: (environment for subprocesses, paths asked)."""
    _RecordingHub.paths = []
    with LoopbackServer(_RecordingHub) as server:
        environment = {**os.environ, "HF_ENDPOINT": server.url}
        environment.pop("HF_HUB_OFFLINE", None)
        yield environment, _RecordingHub.paths


def _python(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=env)


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


def test_the_packed_kernel_runs_exactly_where_the_cpu_has_avx512_bf16():
    assert PACKED_KERNEL == LOOKS_FOR_OPTIONAL_KERNEL


@pytest.mark.slow
def test_the_hub_recorder_sees_a_plain_import_look_for_the_optional_kernel_by_the_cpu_rule(hub):
    environment, asked = hub
    probe = _python("-c", "import huggingface_hub as h\ntry: h.model_info('probe/probe')\nexcept Exception: pass",
                    env=environment)
    assert probe.returncode == 0 and asked, "the recording Hub is not reached: the test below would prove nothing"
    asked.clear()
    plain = _python("-c", "import bitsandbytes", env=environment)
    assert bool(asked) == LOOKS_FOR_OPTIONAL_KERNEL, asked
    assert (NOTICE_PREFIX in plain.stderr) == LOOKS_FOR_OPTIONAL_KERNEL


@pytest.mark.slow
def test_no_command_asks_the_hub_and_the_notice_shows_only_where_a_4bit_model_loads(hub, tmp_path):
    environment, asked = hub
    imported = _python("-c", "import finqa_dsl, finqa_dsl.driver.command_line, finqa_dsl.runs.processes",
                       env=environment)
    assert imported.returncode == 0 and imported.stderr == "", imported.stderr
    helped = _python("scripts/finetune.py", "--help", env=environment)
    assert helped.returncode == 0 and "--config FILE" in helped.stdout
    assert NOTICE_PREFIX not in helped.stderr
    save_tiny_model(tmp_path, "llama", vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1)
    load = ("import logging; logging.basicConfig(); from finqa_dsl.models.loading import load_model; "
            "from finqa_dsl.models.options import ModelOptions; "
            f"load_model({str(tmp_path)!r}, ModelOptions(peft=%r)); "
            f"load_model({str(tmp_path)!r}, ModelOptions(peft=%r))")
    lora = _python("-c", load % ("lora", "lora"), env=environment)
    assert lora.returncode == 0 and NOTICE_PREFIX not in lora.stderr, lora.stderr
    qlora = _python("-c", load % ("qlora", "qlora"), env=environment)
    assert qlora.returncode == 0, qlora.stderr
    assert asked == [], f"asked the Hub for {asked}"
    shown = [line for line in qlora.stderr.splitlines() if NOTICE_PREFIX in line]
    assert len(shown) == (1 if LOOKS_FOR_OPTIONAL_KERNEL else 0), "shown once, explained, however often 4-bit loads"
    assert all("Harmless" in line for line in shown)
