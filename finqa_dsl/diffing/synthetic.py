"""Synthetic paired activations with planted features, and a checker that scores a crosscoder against them.

The generator (``PlantedActivations``): each token has an id drawn uniformly from a vocabulary and a sparse
set of planted features; a feature that fires adds ``magnitude * direction`` to a model's activation
(``magnitude`` uniform in [0.5, 1.5]). Four kinds of feature:

- shared: fires with the same magnitude in both models, along a base direction and a slightly rotated
  fine-tuned direction (``shared_rotation``); its fine-tuned magnitude may be rescaled by a per-feature factor
  (``shared_scale_spread``), as fine-tuning strengthens or weakens a feature a little;
- fine-tuned-only / base-only: only in the fine-tuned / base model, either on their own trigger token ids
  (``exclusive_probability=None``, the easy case) or at random on a share ``exclusive_probability`` of tokens;
- rotated: fires in both models, along directions whose cosine is ``rotated_cosine`` (a feature fine-tuning
  turned; a crosscoder should find one latent with a low decoder cosine, classed shared by norm).

Isotropic noise is added to each model, and the fine-tuned activations are put on another overall scale
(``ft_scale``), which the crosscoder's normalisation constants must absorb. ``HARD`` is the benchmark's set:
many shared features, few rare model-specific ones, as in real activations.

The checker (``recovery``) matches each planted feature to the latent whose decoder columns point along it and
reports, per kind, how many were found (cosine >= ``min_cosine`` in each model the feature lives in) and how
many of those carry the right relative decoder norm (class ``ft_only``/``base_only``/``shared``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

KINDS = ("shared", "ft_only", "base_only", "rotated")
EXPECTED_CLASS = {"shared": "shared", "ft_only": "ft_only", "base_only": "base_only", "rotated": "shared"}


@dataclass(frozen=True)
class PlantedSpec:
    d_model: int = 32
    n_shared: int = 48
    n_ft_only: int = 3
    n_base_only: int = 1
    n_rotated: int = 0
    vocab_size: int = 1000
    trigger_tokens: int = 50  # token ids per model-specific feature (when exclusive_probability is None)
    shared_probability: float = 0.06
    exclusive_probability: float | None = None  # None: model-specific features fire on their trigger tokens
    rotated_probability: float | None = None  # None: shared_probability
    shared_rotation: float = 0.2  # size of the random change of a shared direction in the fine-tuned model
    shared_scale_spread: float = 0.0  # ft magnitude of shared feature j: x s_j, s_j uniform in [1/(1+v), 1+v]
    rotated_cosine: float = 0.3  # cosine between a rotated feature's base and fine-tuned directions
    noise: float = 0.02
    ft_scale: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if min(self.n_shared, self.n_ft_only, self.n_base_only, self.n_rotated) < 0 or self.d_model < 2:
            raise ValueError(f"feature counts must be >= 0 and d_model >= 2: {self}")
        if not -1 < self.rotated_cosine < 1:
            raise ValueError(f"rotated_cosine must be in (-1, 1): {self.rotated_cosine}")


# The benchmark's hard set: 64 dimensions, 256 shared features, 8 fine-tuned-only, 4 base-only, 8 rotated,
# every feature firing on 2% of tokens at random (no trigger tokens), shared magnitudes rescaled by up to 20%
# in the fine-tuned model, noise and a 3x scale difference between the models.
HARD = PlantedSpec(d_model=64, n_shared=256, n_ft_only=8, n_base_only=4, n_rotated=8, shared_probability=0.02,
                   exclusive_probability=0.02, shared_rotation=0.2, shared_scale_spread=0.2, rotated_cosine=0.3,
                   noise=0.02, ft_scale=3.0)
# A small version of it for the slow test: half the dimension, a quarter of the shared features, the same
# rarity and the same share of model-specific ones.
HARD_SMALL = replace(HARD, d_model=32, n_shared=64, n_ft_only=4, n_base_only=2, n_rotated=2)


class PlantedActivations:
    """The ground truth (directions, trigger tokens, scales) and a seeded endless batch stream."""

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
        if spec.exclusive_probability is None and n_planted * spec.trigger_tokens > spec.vocab_size:
            raise ValueError("trigger token sets do not fit in the vocabulary")
        triggers = torch.randperm(spec.vocab_size, generator=g)[: n_planted * spec.trigger_tokens]
        triggers = triggers.view(n_planted, spec.trigger_tokens)
        self.ft_only_tokens, self.base_only_tokens = triggers[: spec.n_ft_only], triggers[spec.n_ft_only:]
        # Drawn after the original generator's draws, so that specs without them give the same data as before.
        self.rotated_base = _unit(torch.randn(spec.n_rotated, d, generator=g))
        other = torch.randn(spec.n_rotated, d, generator=g)
        other = _unit(other - (other * self.rotated_base).sum(-1, keepdim=True) * self.rotated_base)
        c = spec.rotated_cosine
        self.rotated_ft = c * self.rotated_base + (1 - c * c) ** 0.5 * other
        v = spec.shared_scale_spread
        self.shared_ft_scale = 1 / (1 + v) + (1 + v - 1 / (1 + v)) * torch.rand(spec.n_shared, generator=g)

    def directions(self) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Per kind, the (base, fine-tuned) directions of its features; None where the model lacks them."""
        return {"shared": (self.shared_base, self.shared_ft), "ft_only": (None, self.ft_only),
                "base_only": (self.base_only, None), "rotated": (self.rotated_base, self.rotated_ft)}

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``n`` tokens: ``activations`` ``(n, 2, d_model)`` (base, ft) and ``token_ids`` ``(n,)``."""
        s = self.spec
        token_ids = torch.randint(s.vocab_size, (n,), generator=generator)
        fires = torch.rand(n, s.n_shared, generator=generator) < s.shared_probability
        shared = fires * _magnitudes(n, s.n_shared, generator)
        base = shared @ self.shared_base
        ft = (shared * self.shared_ft_scale) @ self.shared_ft
        ft = ft + self._exclusive(token_ids, self.ft_only_tokens, generator) @ self.ft_only
        base = base + self._exclusive(token_ids, self.base_only_tokens, generator) @ self.base_only
        if s.n_rotated:
            p = s.shared_probability if s.rotated_probability is None else s.rotated_probability
            rotated = (torch.rand(n, s.n_rotated, generator=generator) < p) * _magnitudes(n, s.n_rotated, generator)
            base = base + rotated @ self.rotated_base
            ft = ft + rotated @ self.rotated_ft
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

    def _exclusive(self, token_ids: torch.Tensor, triggers: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        p = self.spec.exclusive_probability
        if p is None:
            on = (token_ids[:, None, None] == triggers[None]).any(dim=-1)  # (n, n_features)
        else:
            on = torch.rand(token_ids.shape[0], triggers.shape[0], generator=generator) < p
        return on * _magnitudes(*on.shape, generator)


@torch.no_grad()
def recovery(decoder: torch.Tensor, planted: PlantedActivations, *, min_cosine: float = 0.9,
             thresholds=None) -> dict[str, Any]:
    """Score a crosscoder's decoder ``(dict_size, 2, d_model)`` (base, ft) against the planted features.

    Each planted feature is matched to the latent whose decoder columns are closest to it: for a feature of
    one model, the largest cosine between that model's decoder column and the feature's direction; for a
    feature of both, the largest of the smaller of the two cosines. It is *found* when that cosine is at least
    ``min_cosine``, and *right* when, found, its latent's class by relative decoder norm is the expected one
    (``EXPECTED_CLASS``). Returns per kind ``{"total", "found", "right", "features": [...]}``, each feature
    with its latent, cosines, relative norm ``delta``, class and the latent's decoder cosine between models
    (against the planted one), and ``"ok"``: every exclusive feature right and >= 95% of the shared ones.
    """
    from finqa_dsl.diffing.analysis import Thresholds, classify, relative_norm

    thresholds = thresholds or Thresholds()
    w = decoder.detach().float().cpu()
    delta = relative_norm(w.norm(dim=-1))
    classes = classify(delta, thresholds)
    unit = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    between = (unit[:, 0] * unit[:, 1]).sum(-1)
    report: dict[str, Any] = {}
    for kind, (base, ft) in planted.directions().items():
        cos_base = unit[:, 0] @ base.T if base is not None else None  # (dict, n_features)
        cos_ft = unit[:, 1] @ ft.T if ft is not None else None
        if cos_base is None:
            score = cos_ft
        elif cos_ft is None:
            score = cos_base
        else:
            score = torch.minimum(cos_base, cos_ft)
        rows = []
        if score is not None and score.shape[1]:
            best = score.argmax(dim=0)
            for j, latent in enumerate(best.tolist()):
                planted_cosine = float(base[j] @ ft[j]) if base is not None and ft is not None else None
                found = bool(score[latent, j] >= min_cosine)
                rows.append({"latent": latent, "cosine": round(float(score[latent, j]), 4),
                             "delta": round(float(delta[latent]), 4), "class": classes[latent],
                             "decoder_cosine": round(float(between[latent]), 4),
                             "planted_cosine": None if planted_cosine is None else round(planted_cosine, 4),
                             "found": found, "right": found and classes[latent] == EXPECTED_CLASS[kind]})
        report[kind] = {"total": len(rows), "found": sum(r["found"] for r in rows),
                        "right": sum(r["right"] for r in rows), "features": rows}
    exclusive_ok = all(report[k]["right"] == report[k]["total"] for k in ("ft_only", "base_only"))
    shared = report["shared"]
    report["ok"] = exclusive_ok and shared["right"] >= 0.95 * shared["total"]
    return report


def recovery_line(report: dict[str, Any]) -> str:
    """One line: right/total per kind (shared as a percentage), e.g. ``ft_only 8/8 base_only 4/4 ...``."""
    parts = []
    for kind in ("ft_only", "base_only", "rotated", "shared"):
        r = report[kind]
        if r["total"]:
            parts.append(f"{kind} {r['right']}/{r['total']}" if kind != "shared"
                         else f"shared {100 * r['right'] / r['total']:.1f}%")
    return " ".join(parts)


def spec_dict(spec: PlantedSpec) -> dict[str, Any]:
    return asdict(spec)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _magnitudes(n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    return 0.5 + torch.rand(n, m, generator=generator)
