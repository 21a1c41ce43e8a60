"""Optional GPU-only extras (vLLM, liger-kernel): whether one can run here, checked before any model loads."""

from __future__ import annotations

import importlib.util

from finqa_dsl.core.errors import UsageError


def require_gpu_extra(module: str, *, missing: str, no_gpu: str) -> None:
    """Raise :class:`UsageError` with ``missing`` when ``module`` is not installed, with ``no_gpu`` when no NVIDIA
    GPU is visible. torch is imported only for the second check, so argument checking stays fast."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(missing)
    import torch

    if not torch.cuda.is_available():
        raise UsageError(no_gpu)
