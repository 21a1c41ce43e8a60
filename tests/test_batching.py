"""The one padding helper: left for generation, right for training and activation collection."""

from __future__ import annotations

import pytest
import torch

from finqa_dsl.models.batching import pad


def test_left_padding_puts_every_rows_last_token_in_the_last_column():
    rows, mask = pad([[5, 6, 7], [8]], 0, side="left")
    assert rows.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert rows.dtype == mask.dtype == torch.long


def test_right_padding_rounds_the_width_up_to_a_multiple():
    rows, mask = pad([[5, 6, 7], [8], []], -100, side="right", multiple_of=4)
    assert rows.tolist() == [[5, 6, 7, -100], [8, -100, -100, -100], [-100] * 4]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_an_unknown_side_is_refused():
    with pytest.raises(ValueError, match="left"):
        pad([[1]], 0, side="middle")
