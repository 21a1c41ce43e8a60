"""What a trained crosscoder says about base vs fine-tuned: relative decoder norms, classes, cosines,
Latent Scaling (Minder et al. 2025), a JSON summary and PNG plots.

- Relative decoder norm: ``delta_i = 0.5 * ((||d_i^ft|| - ||d_i^base||) / max(||d_i^ft||, ||d_i^base||) + 1)``
  (0: base only, 1: fine-tuned only); classes by thresholds (``Thresholds``).
- Decoder cosine: ``cos(d_i^base, d_i^ft)``, meaningful for shared latents.
- Latent Scaling: for latent j with direction ``d = d_j^ft`` and a target ``y`` per token,
  ``beta = d . (sum_n f_j(n) y_n) / (||d||^2 sum_n f_j(n)^2)`` (least squares of ``y`` on ``f_j d``).
  Targets per model m: the reconstruction ``x_hat_m`` and the error with the latent's own contribution
  put back, ``x_m - x_hat_m + f_j d_j^m``. Ratios ``nu = beta_base / beta_ft``: a high error ratio means the
  base model has the direction but the decoder shrank it (complete shrinkage); a high reconstruction ratio
  means other latents carry it in the base model (latent decoupling).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finqa_dsl.core.io import atomic_write_json
from finqa_dsl.diffing import files
from finqa_dsl.diffing.crosscoder import Crosscoder

BASE, FT = 0, 1
CLASSES = ("base_only", "shared", "ft_only", "other")


@dataclass(frozen=True)
class Thresholds:
    """Class boundaries on the relative decoder norm, and the Latent Scaling ratio above which a
    fine-tuned-only latent is flagged as an artefact."""

    base_only_max: float = 0.1
    shared_min: float = 0.4
    shared_max: float = 0.6
    ft_only_min: float = 0.9
    artefact_ratio: float = 0.5

    def __post_init__(self):
        if not 0 <= self.base_only_max < self.shared_min <= self.shared_max < self.ft_only_min <= 1:
            raise ValueError(f"need 0 <= base_only_max < shared_min <= shared_max < ft_only_min <= 1: {self}")


def relative_norm(decoder_norms: torch.Tensor) -> torch.Tensor:
    """``delta`` per latent from ``(dict_size, 2)`` decoder norms (base, ft); NaN where both are zero."""
    base, ft = decoder_norms[:, BASE].double(), decoder_norms[:, FT].double()
    largest = torch.maximum(base, ft)
    delta = 0.5 * ((ft - base) / largest + 1)
    return torch.where(largest > 0, delta, torch.full_like(delta, math.nan))


def class_ids(delta: torch.Tensor, thresholds: Thresholds = Thresholds()) -> torch.Tensor:
    """The index in ``CLASSES`` of each latent's class, vectorised (NaN -> other)."""
    t = thresholds
    ids = torch.full(delta.shape, CLASSES.index("other"), dtype=torch.long, device=delta.device)
    ids[(delta >= t.shared_min) & (delta <= t.shared_max)] = CLASSES.index("shared")
    ids[delta >= t.ft_only_min] = CLASSES.index("ft_only")
    ids[delta <= t.base_only_max] = CLASSES.index("base_only")
    return ids


def classify(delta: torch.Tensor, thresholds: Thresholds = Thresholds()) -> list[str]:
    """The class of each latent: base_only, shared, ft_only or other (between classes, or NaN)."""
    return [CLASSES[i] for i in class_ids(delta, thresholds).tolist()]


def decoder_cosine(crosscoder: Crosscoder) -> torch.Tensor:
    """``cos(d_i^base, d_i^ft)`` per latent (0 where a decoder vector is zero)."""
    w = crosscoder.W_dec.detach().double()
    return torch.nn.functional.cosine_similarity(w[:, BASE], w[:, FT], dim=-1, eps=1e-12)


def closed_form_beta(direction: torch.Tensor, f_times_y: torch.Tensor, f_squared: torch.Tensor) -> torch.Tensor:
    """``beta_j = d_j . (sum f_j y) / (||d_j||^2 sum f_j^2)`` for rows j; NaN where a latent never fired."""
    numerator = (direction * f_times_y).sum(dim=-1)
    denominator = direction.pow(2).sum(dim=-1) * f_squared
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30),
                       torch.full_like(numerator, math.nan))


@dataclass
class LatentStats:
    """Per-latent activity and reconstruction quality over a sample of tokens (inference rule)."""

    tokens: int
    frequency: torch.Tensor  # fraction of tokens on which each latent fires
    max_activation: torch.Tensor
    l0: float
    fve: list[float]  # per model, pooled over the sample
    betas: dict[str, torch.Tensor]  # "{reconstruction,error}_{base,ft}" -> (len(latents),)
    latents: list[int]

    def ratios(self) -> dict[str, torch.Tensor]:
        """``nu`` for the reconstruction and error targets: beta_base / beta_ft."""
        return {target: self.betas[f"{target}_base"] / self.betas[f"{target}_ft"]
                for target in ("reconstruction", "error")}


@torch.no_grad()
def latent_statistics(crosscoder: Crosscoder, batches: Iterable[torch.Tensor],
                      scaling_latents: list[int] | None = None) -> LatentStats:
    """One pass over raw activation batches: firing frequency, max activation, L0, FVE per model, and the
    Latent Scaling betas of ``scaling_latents`` (directions ``d_j^ft``)."""
    cc = crosscoder.eval()
    latents = list(scaling_latents or [])
    n, m = cc.config.dict_size, cc.config.n_models
    zeros = partial(torch.zeros, dtype=torch.float64, device=cc.W_dec.device)
    fired, max_act = zeros(n), zeros(n)
    tokens, active = 0, 0.0
    error_sum, x_sum, x_sq = zeros(m), zeros(m, cc.config.d_model), zeros(m)
    f_y = {key: zeros(len(latents), cc.config.d_model)
           for key in ("reconstruction_base", "reconstruction_ft", "error_base", "error_ft")}
    f_sq = zeros(len(latents))
    for raw in batches:
        x = cc.normalize(raw.to(cc.W_dec.device, non_blocking=True))
        f = cc.encode(x)
        x_hat = cc.decode(f)
        tokens += x.shape[0]
        on = f > 0
        fired += on.sum(dim=0)
        active += float(on.sum())
        max_act = torch.maximum(max_act, f.max(dim=0).values.double())
        error_sum += (x - x_hat).double().pow(2).sum(dim=(0, 2))
        x_sum += x.double().sum(dim=0)
        x_sq += x.double().pow(2).sum(dim=(0, 2))
        if latents:
            f_l = f[:, latents].double()
            f_sq += f_l.pow(2).sum(dim=0)
            for model, name in ((BASE, "base"), (FT, "ft")):
                f_y[f"reconstruction_{name}"] += f_l.T @ x_hat[:, model].double()
                f_y[f"error_{name}"] += f_l.T @ (x[:, model] - x_hat[:, model]).double()
    if tokens == 0:
        raise ValueError("no activations to analyse")
    total_sum = x_sq - x_sum.pow(2).sum(dim=-1) / tokens
    direction = cc.W_dec.detach()[latents, FT].double()
    betas = {}
    for model, name in ((BASE, "base"), (FT, "ft")):
        own = (direction * cc.W_dec.detach()[latents, model].double()).sum(dim=-1)  # d . d_j^m
        betas[f"reconstruction_{name}"] = closed_form_beta(direction, f_y[f"reconstruction_{name}"], f_sq)
        # The error target puts the latent's own contribution back: sum f_j (e + f_j d_j^m).
        betas[f"error_{name}"] = closed_form_beta(direction, f_y[f"error_{name}"], f_sq) + torch.where(
            f_sq > 0, own / direction.pow(2).sum(dim=-1), torch.zeros_like(own))
    return LatentStats(tokens=tokens, frequency=(fired / tokens).float().cpu(), max_activation=max_act.cpu(),
                       l0=active / tokens, fve=(1 - error_sum / total_sum.clamp_min(1e-12)).tolist(),
                       betas={key: value.cpu() for key, value in betas.items()}, latents=latents)


def summarize(crosscoder: Crosscoder, batches: Iterable[torch.Tensor], thresholds: Thresholds = Thresholds(),
              *, top: int = 20) -> dict[str, Any]:
    """Everything the analysis reports, as plain JSON-able values (plus arrays under ``_arrays`` for plots)."""
    delta = relative_norm(crosscoder.decoder_norms().detach()).cpu()
    classes = classify(delta, thresholds)
    cosine = decoder_cosine(crosscoder).cpu()
    ft_only = [i for i, c in enumerate(classes) if c == "ft_only"]
    stats = latent_statistics(crosscoder, batches, ft_only)
    ratios = stats.ratios()
    scaling = {i: {"nu_reconstruction": _num(ratios["reconstruction"][j]), "nu_error": _num(ratios["error"][j]),
                   **{f"beta_{key}": _num(value[j]) for key, value in stats.betas.items()}}
               for j, i in enumerate(ft_only)}
    for row in scaling.values():
        row["artefact"] = any(v is not None and v > thresholds.artefact_ratio
                              for v in (row["nu_reconstruction"], row["nu_error"]))
    alive = stats.frequency > 0
    shared = [i for i, c in enumerate(classes) if c == "shared"]

    def latent_row(i: int) -> dict[str, Any]:
        row = {"latent": i, "delta": _num(delta[i]), "cosine": _num(cosine[i]),
               "frequency": _num(stats.frequency[i]), "max_activation": _num(stats.max_activation[i])}
        row.update(scaling.get(i, {}))
        return row

    top_latents = {}
    for name in CLASSES:
        members = [i for i, c in enumerate(classes) if c == name and alive[i]]
        members.sort(key=lambda i: -float(stats.frequency[i]))
        top_latents[name] = [latent_row(i) for i in members[:top]]
    return {
        "dict_size": crosscoder.config.dict_size, "sparsity": crosscoder.config.sparsity, "k": crosscoder.config.k,
        "thresholds": asdict(thresholds), "tokens": stats.tokens, "l0": stats.l0,
        "fve": {"base": stats.fve[BASE], "ft": stats.fve[FT]},
        "dead_latents": int((~alive).sum()),
        "counts": {name: classes.count(name) for name in CLASSES},
        "shared_cosine": {"mean": _num(cosine[shared].mean()) if shared else None,
                          "median": _num(cosine[shared].median()) if shared else None},
        "latent_scaling": {"ft_only_latents": len(ft_only),
                           "artefacts": sum(row["artefact"] for row in scaling.values()),
                           "per_latent": [{"latent": i, **row} for i, row in scaling.items()]},
        "top_latents": top_latents,
        "_arrays": {"delta": delta.numpy(), "shared_cosine": cosine[shared].numpy(),
                    "nu_reconstruction": ratios["reconstruction"].numpy(), "nu_error": ratios["error"].numpy()},
    }


def write_report(summary: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``summary.json`` and the PNG plots into ``folder``; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = summary["_arrays"]
    atomic_write_json(folder / files.SUMMARY, {k: v for k, v in summary.items() if k != "_arrays"})
    written = [folder / files.SUMMARY]
    plt = _pyplot()
    t = summary["thresholds"]

    fig, ax = plt.subplots(figsize=(7, 4))
    delta = arrays["delta"][~np.isnan(arrays["delta"])]
    ax.hist(delta, bins=np.linspace(0, 1, 51))
    ax.set_yscale("log")
    for x in (t["base_only_max"], t["shared_min"], t["shared_max"], t["ft_only_min"]):
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("relative decoder norm delta (0 = base only, 1 = fine-tuned only)")
    ax.set_ylabel("latents")
    written.append(_save(plt, fig, folder / files.DELTA_PLOT))

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(arrays["shared_cosine"], bins=np.linspace(-1, 1, 81))
    ax.set_yscale("log")
    ax.set_xlabel("decoder cosine similarity, base vs fine-tuned (shared latents)")
    ax.set_ylabel("latents")
    written.append(_save(plt, fig, folder / files.COSINE_PLOT))

    if len(arrays["nu_error"]):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(arrays["nu_error"], arrays["nu_reconstruction"], s=8)
        ax.axvline(t["artefact_ratio"], color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(t["artefact_ratio"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("nu error (complete shrinkage)")
        ax.set_ylabel("nu reconstruction (latent decoupling)")
        ax.set_title("Latent Scaling of fine-tuned-only latents")
        written.append(_save(plt, fig, folder / files.SCALING_PLOT))
    return written


def _num(value: torch.Tensor | float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


# --- what a latent means: promoted tokens, the latent table, convergence --------------------------------------


@torch.no_grad()
def promoted_tokens(decoder: torch.Tensor, unembeddings: dict[str, torch.Tensor], latents: list[int],
                    token_text, *, top: int = 10, chunk: int = 256) -> dict[int, dict[str, dict[str, list]]]:
    """The tokens each latent's decoder direction promotes and suppresses through each model's unembedding.

    ``decoder``: ``(dict_size, n_models, d_model)`` (model order base, ft); ``unembeddings``: per model name
    ("base", "ft") its ``(vocab, d_model)`` output matrix (times the final norm's weight, see
    ``load_unembedding``). Logits ``U d_i^m`` of latent i in model m; the ``top`` largest are promoted, the
    ``top`` smallest suppressed. Returns ``{latent: {model: {"promoted": [[text, logit]..], "suppressed": ..}}}``.
    Done in chunks of latents, so memory is ``chunk x vocab``, never ``dict_size x vocab``.
    """
    out: dict[int, dict[str, dict[str, list]]] = {i: {} for i in latents}
    for model, (name, matrix) in enumerate(unembeddings.items()):
        matrix = matrix.float()
        for start in range(0, len(latents), chunk):
            part = latents[start:start + chunk]
            logits = decoder[part, model].float().to(matrix.device) @ matrix.T  # (chunk, vocab)
            high = logits.topk(min(top, logits.shape[1]), dim=1)
            low = logits.topk(min(top, logits.shape[1]), dim=1, largest=False)
            for row, latent in enumerate(part):
                out[latent][name] = {
                    "promoted": [[token_text(int(t)), round(float(v), 4)]
                                 for t, v in zip(high.indices[row], high.values[row], strict=True)],
                    "suppressed": [[token_text(int(t)), round(float(v), 4)]
                                   for t, v in zip(low.indices[row], low.values[row], strict=True)]}
    return out


def load_unembedding(name_or_path: str) -> torch.Tensor:
    """A model's ``(vocab, d_model)`` output embedding, each column times the final norm's weight when the model
    has one (what a direction at the last residual position turns into logits, up to the norm's scaling).
    Loads the model on the CPU (an adapter folder onto its base, as the rest of the toolkit does)."""
    from finqa_dsl.models.loading import load_model

    model = load_model(name_or_path)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    weight = model.get_output_embeddings().weight.detach().float()
    norm = getattr(getattr(model, "model", None), "norm", None)
    if norm is not None and getattr(norm, "weight", None) is not None:
        weight = weight * norm.weight.detach().float()[None, :]
    return weight


def latent_table(summary: dict[str, Any], promoted: dict[int, dict[str, dict[str, list]]] | None = None,
                 firing_tokens: dict[int, list[str]] | None = None, *, per_class: int = 10) -> dict[str, list]:
    """The top latents leaning to each model (fine-tuned-only, base-only; then shared), most frequent first:
    relative norm, cosine, Latent Scaling ratios, firing rate, top firing tokens, promoted tokens (each model's
    first five)."""
    table: dict[str, list] = {}
    for name in ("ft_only", "base_only", "shared"):
        rows = []
        for row in summary["top_latents"][name][:per_class]:
            i = row["latent"]
            entry = {key: row.get(key) for key in ("latent", "delta", "cosine", "frequency", "nu_reconstruction",
                                                    "nu_error", "artefact")}
            entry["firing_tokens"] = (firing_tokens or {}).get(i, [])
            entry["promoted"] = {model: [text for text, _ in sides["promoted"][:5]]
                                 for model, sides in (promoted or {}).get(i, {}).items()}
            entry["suppressed"] = {model: [text for text, _ in sides["suppressed"][:5]]
                                   for model, sides in (promoted or {}).get(i, {}).items()}
            rows.append(entry)
        table[name] = rows
    return table


def latent_table_markdown(table: dict[str, list]) -> str:
    """The latent table as markdown, one section per class."""

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, list):
            return ", ".join(f"`{_md_escape(str(v))}`" for v in value) or "-"
        if isinstance(value, dict):
            return "; ".join(f"{k}: {cell(v)}" for k, v in value.items()) or "-"
        return _md_escape(str(value))

    titles = {"ft_only": "Leaning to the fine-tuned model", "base_only": "Leaning to the base model",
              "shared": "Shared"}
    lines = []
    for name, rows in table.items():
        lines += [f"## {titles.get(name, name)} ({len(rows)})", "",
                  "| latent | delta | cosine | nu recon | nu error | firing rate | top firing tokens | promoted |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append("| " + " | ".join(cell(v) for v in (r["latent"], r["delta"], r["cosine"],
                                                              r["nu_reconstruction"], r["nu_error"], r["frequency"],
                                                              r["firing_tokens"], r["promoted"])) + " |")
        lines.append("")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n").replace("`", "'")


def convergence_warning(train_summary: dict[str, Any] | None) -> str | None:
    """A warning when the crosscoder had not settled (or when nothing says whether it had); None when it had."""
    if train_summary is None:
        return ("no train_summary.json beside the crosscoder: cannot tell whether its latents had settled "
                "(train it with this version of scripts/train_crosscoder.py)")
    if not train_summary.get("settled", False):
        return f"this crosscoder had not settled: {train_summary.get('verdict', '')}"
    return None
