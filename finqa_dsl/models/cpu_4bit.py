"""bitsandbytes' 4-bit layers on CPU: the shapes its fused kernel takes, and the notice it prints at import.

On a CPU with AVX-512-BF16, a 4-bit layer that runs without gradients (evaluation, test inference) repacks
its weight for bitsandbytes' fused kernel, in tiles of 32 output rows by one quantisation block (64 by
default) of input columns; a layer of another shape fails there with a bare tensor-shape error. Other CPUs
dequantise and multiply, which takes any shape. :func:`check_4bit_layers` finds such a layer at load time.

Importing bitsandbytes on such a CPU tries to fetch an optional faster kernel from the Hugging Face Hub and
logs ``Failed to load CPU gemm_4bit_forward ... pip install kernels`` when it cannot; bitsandbytes then uses
its built-in kernel. transformers imports bitsandbytes with ``TrainingArguments``, so every run (``--help``
too) would show it. :func:`quiet_kernel_notice` (installed when :mod:`finqa_dsl` is imported) holds that one
message back; :func:`log_kernel_notice` shows it, explained, where a 4-bit model is loaded on CPU.
Torch-free: nothing here imports torch or bitsandbytes.
"""

from __future__ import annotations

import logging
import re

from finqa_dsl.core.errors import UsageError

logger = logging.getLogger(__name__)

PACKED_ROWS = 32  # bitsandbytes.functional._convert_weight_packed_for_cpu(block_n=32)
NOTICE_LOGGER = "bitsandbytes.backends.cpu.ops"
NOTICE_PREFIX = "Failed to load CPU gemm_4bit_forward"


class _HeldNotice(logging.Filter):
    """Drops bitsandbytes' optional-kernel notice (only that message) and keeps it for later."""

    def __init__(self) -> None:
        super().__init__()
        self.message: str | None = None
        self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(NOTICE_PREFIX):
            return True
        self.message = message
        return False


_held = _HeldNotice()


def quiet_kernel_notice() -> None:
    """Hold back bitsandbytes' optional-kernel notice (idempotent; must run before bitsandbytes is imported)."""
    notice_logger = logging.getLogger(NOTICE_LOGGER)
    if _held not in notice_logger.filters:
        notice_logger.addFilter(_held)


def log_kernel_notice() -> None:
    """Log the held notice once, saying what it means; nothing when bitsandbytes did not emit it."""
    if _held.message and not _held.shown:
        _held.shown = True
        logger.warning("bitsandbytes: %s. Harmless: 4-bit layers use bitsandbytes' built-in CPU kernel "
                       "instead (README, QLoRA on CPU).", _held.message.rstrip("."))


def check_4bit_layers(model, ignore: str | None = None) -> None:
    """Raise :class:`UsageError` naming the first 4-bit layer that bitsandbytes' AVX-512-BF16 CPU kernel
    cannot run: it needs ``out_features`` divisible by 32 and ``in_features`` by the quantisation block size.
    Layers that bitsandbytes will not send to that kernel (other CPUs, GPU) are not checked, nor layers whose
    name fully matches the regex ``ignore`` (e.g. a vision tower that text prompts never run)."""
    for name, module in model.named_modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False) or module.weight.device.type != "cpu":
            continue
        if ignore and re.fullmatch(ignore, name):
            continue
        blocksize = module.weight.blocksize
        if module.out_features % PACKED_ROWS or module.in_features % blocksize:
            raise UsageError(
                f"4-bit layer {name} ({module.in_features} inputs, {module.out_features} outputs) cannot run "
                f"on this CPU: bitsandbytes' AVX-512-BF16 kernel needs outputs divisible by {PACKED_ROWS} and "
                f"inputs divisible by the quantisation block size {blocksize}. Use --peft lora, or a model "
                "whose layers fit (the text layers of SmolLM2, Qwen2.5, Gemma-3 and Mistral do)."
            )
