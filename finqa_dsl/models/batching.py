"""Token rows of different lengths as one padded batch: the one padding helper of generation (left), training
batches and activation collection (right)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

SIDES = ("left", "right")


def pad(sequences: Sequence[Sequence[int]], value: int, side: Literal["left", "right"] = "right",
        multiple_of: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, attention_mask)``: the sequences as a long tensor, each padded with ``value`` on ``side`` to the
    longest (rounded up to a multiple of ``multiple_of``), and a mask that is 1 on each sequence's own tokens.
    Generation pads on the left (every row's next token is in the last column); training on the right."""
    if side not in SIDES:
        raise ValueError(f"pad side must be one of {SIDES}, not {side!r}")
    width = max((len(ids) for ids in sequences), default=0)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    rows = torch.full((len(sequences), width), value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        columns = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        rows[row, columns] = torch.as_tensor(ids, dtype=torch.long)
        mask[row, columns] = 1
    return rows, mask
