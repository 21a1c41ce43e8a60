"""Synthetic paired activations with planted features, for testing a crosscoder against a known answer.

Each token has an id drawn uniformly from a vocabulary. Shared features fire at random, with the same
coefficient in both models, along a base direction and a (slightly rotated) fine-tuned direction. Each
fine-tuned-only feature fires on its own set of token ids and only in the fine-tuned model; each base-only
feature likewise only in the base model. The fine-tuned model's activations are on a different overall
scale (``ft_scale``), which the crosscoder's normalisation constants must absorb.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PlantedSpec:
    d_model: int = 32
    n_shared: int = 48
    n_ft_only: int = 3
    n_base_only: int = 1
    vocab_size: int = 1000
    trigger_tokens: int = 50  # token ids per planted (model-specific) feature
    shared_probability: float = 0.06
    shared_rotation: float = 0.2  # size of the random change of a shared direction in the fine-tuned model
    noise: float = 0.02
    ft_scale: float = 3.0
    seed: int = 0


class PlantedActivations:
    """The ground truth (directions, trigger tokens) and a seeded endless batch stream."""

    def __init__(self, spec: PlantedSpec = PlantedSpec()):
        self.spec = spec
        g = torch.Generator().manual_seed(spec.seed)
        d = spec.d_model
        self.shared_base = _unit(torch.randn(spec.n_shared, d, generator=g))
        self.shared_ft = _unit(self.shared_base + spec.shared_rotation * _unit(torch.randn(spec.n_shared, d,
                                                                                           generator=g)))
        self.ft_only = _unit(torch.randn(spec.n_ft_only, d, generator=g))
        self.base_only = _unit(torch.randn(spec.n_base_only, d, generator=g))
        n_planted = spec.n_ft_only + spec.n_base_only
        if n_planted * spec.trigger_tokens > spec.vocab_size:
            raise ValueError("trigger token sets do not fit in the vocabulary")
        triggers = torch.randperm(spec.vocab_size, generator=g)[: n_planted * spec.trigger_tokens]
        triggers = triggers.view(n_planted, spec.trigger_tokens)
        self.ft_only_tokens, self.base_only_tokens = triggers[: spec.n_ft_only], triggers[spec.n_ft_only:]

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` tokens: ``activations`` ``(n, 2, d_model)`` (base, ft) and ``token_ids`` ``(n,)``."""
        s = self.spec
        token_ids = torch.randint(s.vocab_size, (n,), generator=generator)
        fires = torch.rand(n, s.n_shared, generator=generator) < s.shared_probability
        shared = fires * _magnitudes(n, s.n_shared, generator)
        base = shared @ self.shared_base
        ft = shared @ self.shared_ft
        ft = ft + self._planted(token_ids, self.ft_only_tokens, generator) @ self.ft_only
        base = base + self._planted(token_ids, self.base_only_tokens, generator) @ self.base_only
        x = torch.stack([base, ft], dim=1)
        x = x + s.noise * torch.randn(x.shape, generator=generator)
        x[:, 1] *= s.ft_scale
        return {"activations": x, "token_ids": token_ids}

    def batches(self, batch_size: int, *, seed: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Fresh data forever; batch ``b`` depends only on (``seed``, ``b``)."""
        batch = start_batch
        while True:
            yield self.sample(batch_size, torch.Generator().manual_seed(seed * 1_000_003 + batch))
            batch += 1

    @staticmethod
    def _planted(token_ids: torch.Tensor, triggers: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        on = (token_ids[:, None, None] == triggers[None]).any(dim=-1)  # (n, n_features)
        return on * _magnitudes(*on.shape, generator)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _magnitudes(n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    return 0.5 + torch.rand(n, m, generator=generator)
