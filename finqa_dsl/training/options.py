"""The choices of ``--loss_implementation`` and the batch order, torch-free so that argument checking stays fast."""

from __future__ import annotations

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.extras import require_gpu_extra

TARGET_ONLY = "target_only"  # LM head + cross-entropy at the labelled positions only (exact; the default)
FULL = "full"  # the model's own loss over full-vocabulary logits at every position
LIGER = "liger"  # liger-kernel's fused linear cross-entropy (GPU, optional extra)
LOSS_IMPLEMENTATIONS = (TARGET_ONLY, FULL, LIGER)


def check_loss_implementation(name: str, use_liger_kernel: bool = False) -> None:
    """Raise :class:`UsageError` for a ``--loss_implementation`` that cannot run here."""
    if name not in LOSS_IMPLEMENTATIONS:
        raise UsageError(f"--loss_implementation {name!r} is not one of: {', '.join(LOSS_IMPLEMENTATIONS)}.")
    if use_liger_kernel and name != LIGER:
        raise UsageError("--use_liger_kernel replaces the loss: pass --loss_implementation liger instead.")
    if name != LIGER:
        return
    require_gpu_extra("liger_kernel",
                      missing="--loss_implementation liger needs liger-kernel: pip install 'finqa-dsl[liger]' "
                              "(GPU only), or use --loss_implementation target_only.",
                      no_gpu="--loss_implementation liger runs Triton kernels on a GPU and none is available: use "
                             "--loss_implementation target_only (exact, the default).")


def train_sampling_strategy(requested: str, padding_free: bool) -> str:
    """The Trainer's batch order: padded batches (the default) are grouped by length, so that little padding is
    computed (BENCHMARKS.md); ``--train_sampling_strategy`` other than ``random``, or ``--padding_free``, is kept."""
    return "group_by_length" if requested == "random" and not padding_free else requested
