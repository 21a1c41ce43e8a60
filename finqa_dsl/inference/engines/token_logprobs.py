"""The log-probability of each token that ``model.generate`` picks, under the model's own distribution.

:class:`TokenLogprobs` is a ``LogitsProcessor`` placed first (before any constraint or sampling warper), so it
sees the raw logits: at each step it keeps their log-softmax, and at the next step (or at :meth:`finish`, after the
last) it reads off the token that was picked. Self-consistency breaks ties between answers by these sums.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class TokenLogprobs(LogitsProcessor):
    """Per row, the log-probabilities of the tokens generated in one ``model.generate`` call."""

    def __init__(self, rows: int):
        self.values: list[list[float]] = [[] for _ in range(rows)]
        self._previous: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._record(input_ids[:, -1])
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> None:
        """Record the call's last token (``sequences[:, -1]`` of its output)."""
        self._record(last_tokens)

    def _record(self, tokens: torch.Tensor) -> None:
        if self._previous is None:
            return
        picked = self._previous.gather(1, tokens[:, None].to(self._previous.device)).squeeze(1).tolist()
        for values, value in zip(self.values, picked, strict=True):
            values.append(value)
        self._previous = None
