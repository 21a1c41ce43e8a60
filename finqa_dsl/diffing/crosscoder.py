"""The crosscoder: one sparse code over the paired activations of several models, one decoder per model.

Shapes: activations ``x`` are ``(batch, n_models, d_model)`` (model 0 = base, model 1 = fine-tuned), codes
``f`` are ``(batch, dict_size)``. Encoder ``f = ReLU(sum_m x_m W_enc[m] + b_enc)``; decoder
``x_hat_m = f W_dec[:, m] + b_dec[m]``. Sparsity either by BatchTopK (keep the ``k * batch`` largest scores
``f_i * sum_m ||d_i^m||`` of the whole batch; at inference a learned threshold on the same score) or, for
comparison with the older method, by a decoder-norm-weighted L1 penalty (applied by the training loss).

The crosscoder works on normalised activations: ``normalize(x)`` multiplies each model's activations by a
constant estimated from data (``estimate_scales``) so that their mean norm is ``sqrt(d_model)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

Sparsity = Literal["batchtopk", "l1"]
SPARSITIES: tuple[str, ...] = ("batchtopk", "l1")


@dataclass(frozen=True)
class CrosscoderConfig:
    """Shape and sparsity rule of a crosscoder."""

    d_model: int
    dict_size: int
    n_models: int = 2
    sparsity: Sparsity = "batchtopk"
    k: int = 100  # BatchTopK: mean number of active latents per token
    # Initialisation, as Minder et al.'s dictionary_learning CrossCoder (``norm_init_scale``,
    # ``same_init_for_all_layers=False``, ``init_with_transpose=True``): each model's decoder vector d_i^m drawn
    # independently, scaled to ``decoder_init_norm``, and the encoder the decoder's transpose. A shared start
    # (the same direction in every model) or a large norm keeps model-specific features from separating within
    # a short budget; see BENCHMARKS.md, "Crosscoder recovery of planted features".
    decoder_init_norm: float = 0.1
    same_init_for_all_models: bool = False
    init_with_transpose: bool = True

    def __post_init__(self):
        if self.sparsity not in SPARSITIES:
            raise ValueError(f"sparsity must be one of {SPARSITIES}, got {self.sparsity!r}")
        if min(self.d_model, self.dict_size, self.n_models, self.k) < 1:
            raise ValueError(f"d_model, dict_size, n_models and k must be positive: {self}")


class Crosscoder(nn.Module):
    """A BatchTopK or L1 crosscoder; see the module docstring for shapes and rules."""

    def __init__(self, config: CrosscoderConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        m, d, n = config.n_models, config.d_model, config.dict_size
        decoder = _random_rows(n, 1 if config.same_init_for_all_models else m, d, config.decoder_init_norm,
                               generator).expand(n, m, d).clone()
        self.W_dec = nn.Parameter(decoder)  # (dict_size, n_models, d_model): row i, model m is d_i^m
        encoder = decoder if config.init_with_transpose else _random_rows(n, m, d, config.decoder_init_norm, generator)
        self.W_enc = nn.Parameter(encoder.permute(1, 2, 0).contiguous())  # (n_models, d_model, dict_size)
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(m, d))
        self.register_buffer("input_scale", torch.ones(m))
        # BatchTopK inference threshold on the score; negative until training has estimated it.
        self.register_buffer("threshold", torch.tensor(-1.0))

    # --- normalisation -------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw activations -> the crosscoder's space (float32, each model scaled by its constant)."""
        return x.float() * self.input_scale[None, :, None]

    # --- encoder -------------------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(sum_m x_m W_enc[m] + b_enc)``, before any sparsity rule."""
        # One (batch, m*d) x (m*d, dict) product: both layouts are views, so neither pass copies a weight.
        return torch.relu(torch.addmm(self.b_enc, x.flatten(1), self.W_enc.flatten(0, 1)))

    def decoder_norms(self) -> torch.Tensor:
        """``||d_i^m||`` as ``(dict_size, n_models)``."""
        return self.W_dec.norm(dim=-1)

    def scores(self, f: torch.Tensor) -> torch.Tensor:
        """The BatchTopK ranking score ``f_i * sum_m ||d_i^m||``."""
        return f * self.decoder_norms().sum(dim=-1)

    def encode(self, x: torch.Tensor, *, use_threshold: bool | None = None) -> torch.Tensor:
        """The sparse code of normalised ``x``.

        BatchTopK: by default the batch rule while training and the threshold rule in eval mode (once a
        threshold exists), so that at inference one token's code does not depend on its batch-mates.
        L1: the ReLU pre-activations themselves.
        """
        f = self.pre_activations(x)
        if self.config.sparsity == "l1":
            return f
        if use_threshold is None:
            use_threshold = not self.training and self.has_threshold
        if use_threshold:
            if not self.has_threshold:
                raise RuntimeError("this crosscoder has no inference threshold yet (train it past threshold_start)")
            return f * (self.scores(f) > self.threshold)
        return batch_topk(f, self.scores(f), self.config.k)

    @property
    def has_threshold(self) -> bool:
        return bool(self.threshold >= 0)

    # --- decoder -------------------------------------------------------------------------------------
    def decode(self, f: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
        """``x_hat_m = f W_dec[:, m] (+ b_dec[m])`` as ``(batch, n_models, d_model)``."""
        if bias:
            return torch.addmm(self.b_dec.flatten(), f, self.W_dec.flatten(1)).view(-1, *self.b_dec.shape)
        return (f @ self.W_dec.flatten(1)).view(-1, *self.b_dec.shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``x`` -> ``(x_hat, f)``."""
        f = self.encode(x)
        return self.decode(f), f

    # --- initialisation from data ------------------------------------------------------------------
    @torch.no_grad()
    def init_decoder_bias(self, x: torch.Tensor) -> None:
        """Set each model's decoder bias to the geometric median of normalised ``x`` (the first batch)."""
        for m in range(self.config.n_models):
            self.b_dec[m] = geometric_median(x[:, m].float())


def _random_rows(n: int, m: int, d: int, norm: float, generator: torch.Generator | None) -> torch.Tensor:
    """``(n, m, d)`` vectors with uniformly random directions and the given norm."""
    rows = torch.randn(n, m, d, generator=generator)
    return norm * rows / rows.norm(dim=-1, keepdim=True)


def batch_topk(f: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k * batch`` largest positive scores across the whole batch; zero every other entry of ``f``."""
    return f * batch_topk_mask(scores, k)[0]


def batch_topk_mask(scores: torch.Tensor, k: int, *, hint: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask of the ``k * batch`` largest positive scores of the batch, and the smallest kept positive score
    (0 if none). ``batch_topk_indices`` says how it is found."""
    top, smallest = batch_topk_indices(scores, k, hint=hint)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[top] = True
    return mask.view_as(scores), smallest


def batch_topk_indices(scores: torch.Tensor, k: int, *, hint: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the ``k * batch`` largest positive scores of the batch, and the smallest of them (0 if none).

    ``hint``: a score believed to lie below the cut (e.g. a little under the previous batch's smallest kept
    score). When at least ``k * batch`` scores exceed it, only those are ranked (a few thousand instead of
    ``batch * dict_size``); the result is the same set. Otherwise every score is ranked.
    """
    flat = scores.flatten()
    keep = min(k * scores.shape[0], flat.numel())
    top = None
    if hint is not None and hint > 0:
        candidates = (flat > hint).nonzero().squeeze(1)
        if candidates.numel() >= keep:
            top = candidates[flat[candidates].topk(keep, sorted=False).indices]
    if top is None:
        top = flat.topk(keep, sorted=False).indices
    kept = flat[top]
    positive = kept > 0
    top, kept = top[positive], kept[positive]
    smallest = kept.min() if kept.numel() else flat.new_zeros(())
    return top, smallest


def geometric_median(points: torch.Tensor, *, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to ``points`` (rows)."""
    guess = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1.0 / (points - guess).norm(dim=1).clamp_min(1e-8)
        new = (weights[:, None] * points).sum(dim=0) / weights.sum()
        if (new - guess).norm() <= tol * max(1.0, float(guess.norm())):
            return new
        guess = new
    return guess


@torch.no_grad()
def estimate_scales(samples: torch.Tensor) -> torch.Tensor:
    """Per-model constants ``sqrt(d_model) / mean ||x_m||`` from raw samples ``(n, n_models, d_model)``."""
    mean_norm = samples.float().norm(dim=-1).mean(dim=0)
    if bool((mean_norm == 0).any()):
        raise ValueError("a model's activations are all zero in the sample: cannot estimate its scale")
    return samples.shape[-1] ** 0.5 / mean_norm


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def save_crosscoder(crosscoder: Crosscoder, path: str | Path) -> None:
    """Save config and weights to one ``torch.save`` file (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"config": asdict(crosscoder.config), "state_dict": crosscoder.state_dict()}, tmp)
    tmp.replace(path)


def load_crosscoder(path: str | Path) -> Crosscoder:
    """Load a crosscoder saved by ``save_crosscoder``, in eval mode."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    crosscoder = Crosscoder(CrosscoderConfig(**blob["config"]))
    crosscoder.load_state_dict(blob["state_dict"])
    return crosscoder.eval()
