"""bitsandbytes' 4-bit layers on CPU: the shapes its fused kernel takes, and its optional-kernel lookup at import.

On a CPU with AVX-512-BF16, a 4-bit layer that runs without gradients (evaluation, test inference) repacks
its weight for bitsandbytes' fused kernel, in tiles of 32 output rows by one quantisation block (64 by
default) of input columns; a layer of another shape fails there with a bare tensor-shape error. Other CPUs
dequantise and multiply, which takes any shape. :func:`check_4bit_layers` finds such a layer at load time.

On such a CPU, importing bitsandbytes also asks the Hugging Face Hub (through the ``kernels`` package, which
transformers requires) for an optional faster kernel, and logs ``Failed to load CPU gemm_4bit_forward ...``
when it gets none; bitsandbytes then uses its built-in kernel. transformers and peft import bitsandbytes, so
every command would reach for the network and show that notice. :func:`import_bitsandbytes_offline`, which
the entry scripts call before anything imports transformers, imports it with the Hub offline for that import
only (huggingface_hub's ``HF_HUB_OFFLINE`` setting, which ``kernels`` honours by looking in the local cache
only) and keeps the notice; :func:`log_kernel_notice` shows it, explained, where a 4-bit model loads on CPU.
Nothing here imports torch or bitsandbytes at import time.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator

from finqa_dsl.core.errors import UsageError

logger = logging.getLogger(__name__)

PACKED_ROWS = 32  # bitsandbytes.functional._convert_weight_packed_for_cpu(block_n=32)
NOTICE_PREFIX = "Failed to load CPU gemm_4bit_forward"
OFFLINE_PREFIX = "Skipping publisher trust check"  # kernels, on being offline: our own doing, not news
_notice: str | None = None
_notice_shown = False


@contextlib.contextmanager
def _hub_offline_and_held() -> Iterator[list[logging.LogRecord]]:
    """Hub offline, and every record logged meanwhile held in the yielded list instead of reaching a handler."""
    from huggingface_hub import constants

    held: list[logging.LogRecord] = []
    root, hold = logging.getLogger(), logging.Handler()
    hold.emit = held.append
    saved = constants.HF_HUB_OFFLINE, root.handlers[:], root.level
    constants.HF_HUB_OFFLINE = True
    root.handlers[:], root.level = [hold], logging.WARNING
    try:
        yield held
    finally:
        constants.HF_HUB_OFFLINE, root.handlers[:], root.level = saved


def import_bitsandbytes_offline() -> None:
    """Import bitsandbytes (if nothing has yet) with the Hub offline; keep its optional-kernel notice.

    Its optional-kernel lookup then reads only the local Hugging Face cache: no network request, and a kernel
    cached by an earlier online run is still used. Anything else logged during the import is passed on as
    usual. Call it before transformers or peft is imported."""
    global _notice
    if "bitsandbytes" in sys.modules:
        return
    with _hub_offline_and_held() as held:
        import bitsandbytes  # noqa: F401
    for record in held:
        message = record.getMessage()
        if message.startswith(NOTICE_PREFIX):
            _notice = message.split(": ")[0]
        elif not message.startswith(OFFLINE_PREFIX):
            logging.getLogger(record.name).handle(record)


def log_kernel_notice() -> None:
    """Log bitsandbytes' optional-kernel notice once, saying what it means; nothing when it emitted none."""
    global _notice_shown
    if _notice and not _notice_shown:
        _notice_shown = True
        logger.warning("bitsandbytes: %s. Harmless: 4-bit layers use bitsandbytes' built-in CPU kernel instead "
                       "(README, QLoRA on CPU).", _notice)


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
