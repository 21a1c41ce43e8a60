"""Training a crosscoder on a stream of paired activation batches: small, seeded, resumable.

Loss per batch (normalised activations ``x``, reconstruction ``x_hat``):
``recon = mean_b sum_{m,d} (x - x_hat)^2``, plus for BatchTopK ``auxk_weight * AuxK`` and for L1
``l1_coeff * mean_b sum_i f_i sum_m ||d_i^m||``. AuxK (Gao et al. 2024): the top ``auxk_latents`` dead latents'
pre-activations decode (no bias) the detached residual ``x - x_hat``; its squared error is divided by the
residual's variance. A latent is dead once it has not fired for ``dead_tokens`` tokens. The BatchTopK
inference threshold is a running average (``threshold_decay``) of the smallest kept score, from step
``threshold_start_step`` on. Adam(W, no weight decay by default), linear warmup, then a constant rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from finqa_dsl.core.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, read_jsonl_tolerant
from finqa_dsl.diffing import files
from finqa_dsl.diffing.crosscoder import (
    Crosscoder,
    CrosscoderConfig,
    batch_topk,
    estimate_scales,
    save_crosscoder,
)

logger = logging.getLogger(__name__)


class ActivationSource(Protocol):
    """Anything that yields seeded, endless batches ``{"activations": (batch, n_models, d_model), ...}``,
    starting at batch ``start_batch`` exactly as an uninterrupted stream would reach it."""

    def batches(self, batch_size: int, *, seed: int, start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]: ...


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: Minder et al.'s BatchTopK crosscoder run)."""

    steps: int
    batch_size: int = 2048
    lr: float = 1e-4
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    auxk_weight: float = 1 / 32
    auxk_latents: int | None = None  # dead latents that reconstruct the residual; None: d_model // 2
    dead_tokens: int = 10_000_000
    l1_coeff: float = 1.0  # L1 crosscoder only
    threshold_start_step: int = 1000
    threshold_decay: float = 0.999
    scale_batches: int = 4  # batches used to estimate the normalisation constants
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive: {self}")


MODEL_NAMES = ("base", "ft")


def model_names(n_models: int) -> tuple[str, ...]:
    """Names used in metric keys: base/ft for a pair, model0.. otherwise."""
    return MODEL_NAMES if n_models == 2 else tuple(f"model{m}" for m in range(n_models))


def fraction_of_variance_explained(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per model: ``1 - sum ||x_m - x_hat_m||^2 / sum ||x_m - mean(x_m)||^2`` over the batch."""
    error = (x - x_hat).pow(2).sum(dim=(0, 2))
    total = (x - x.mean(dim=0, keepdim=True)).pow(2).sum(dim=(0, 2))
    return 1 - error / total.clamp_min(1e-12)


def auxk_loss(crosscoder: Crosscoder, residual: torch.Tensor, pre_activations: torch.Tensor,
              dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """Normalised squared error of the residual reconstructed by the top ``k_aux`` dead latents (0 if none)."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre_activations.new_zeros(())
    masked = torch.where(dead[None], pre_activations, torch.full_like(pre_activations, -torch.inf))
    values, indices = masked.topk(min(k_aux, n_dead), dim=-1, sorted=False)
    codes = torch.zeros_like(pre_activations).scatter(-1, indices, values.clamp_min(0))
    error = (residual - crosscoder.decode(codes, bias=False)).pow(2).sum(dim=(1, 2)).mean()
    variance = (residual - residual.mean(dim=0, keepdim=True)).pow(2).sum(dim=(1, 2)).mean()
    return (error / variance.clamp_min(1e-12)).nan_to_num(0.0)


class CrosscoderTrainer:
    """Owns the crosscoder, the optimiser and the dead-latent counters; ``train()`` runs or resumes."""

    def __init__(self, model_config: CrosscoderConfig, config: TrainConfig, source: ActivationSource,
                 out_dir: str | Path | None = None, *, on_log: Callable[[dict[str, Any]], None] | None = None,
                 device: str | torch.device = "cpu"):
        self.model_config, self.config, self.source = model_config, config, source
        self.device = torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_log = on_log
        generator = torch.Generator().manual_seed(config.seed)
        self.crosscoder = Crosscoder(model_config, generator=generator).to(self.device)
        self.optimizer = torch.optim.AdamW(self.crosscoder.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        warmup = max(1, config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.tokens_since_fired = torch.zeros(model_config.dict_size, dtype=torch.long, device=self.device)
        self.step = 0
        self.k_aux = config.auxk_latents or max(1, model_config.d_model // 2)

    # --- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"model_config": asdict(self.model_config), "train_config": asdict(self.config),
                "step": self.step, "model": self.crosscoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "tokens_since_fired": self.tokens_since_fired}

    def save_checkpoint(self) -> Path:
        assert self.out_dir is not None
        path = self.out_dir / files.CHECKPOINT
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint of the same crosscoder and data settings (``steps`` may differ)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob["model_config"] != asdict(self.model_config):
            raise ValueError(f"{path}: crosscoder config {blob['model_config']} != {asdict(self.model_config)}")
        saved = {k: v for k, v in blob["train_config"].items() if k != "steps"}
        wanted = {k: v for k, v in asdict(self.config).items() if k != "steps"}
        if saved != wanted:
            changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
            raise ValueError(f"{path}: training settings differ from the checkpoint's: {changed}")
        self.crosscoder.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        self.tokens_since_fired = blob["tokens_since_fired"].to(self.device)
        self.step = blob["step"]

    # --- the loop ------------------------------------------------------------------------------------
    def train(self, *, resume: bool = False, progress: bool = True) -> Crosscoder:
        """Train to ``config.steps``; with ``resume``, continue from ``out_dir``'s checkpoint if it has one."""
        cfg = self.config
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            checkpoint = self.out_dir / files.CHECKPOINT
            if resume and checkpoint.is_file():
                self.load_checkpoint(checkpoint)
                logger.info("resumed from %s at step %d", checkpoint, self.step)
            # Rows logged after the checkpoint (a crash) or by an earlier run (no resume) are dropped.
            log_path = self.out_dir / files.TRAIN_LOG
            atomic_write_jsonl(log_path, [row for row in read_jsonl_tolerant(log_path) if row["step"] <= self.step])
            atomic_write_json(self.out_dir / files.TRAIN_CONFIG,
                              {"crosscoder": asdict(self.model_config), "training": asdict(cfg)})
        if self.step == 0:
            self._initialise_from_data()
        log = JsonlAppender(log_path) if self.out_dir is not None else None
        window: dict[str, float] = {}
        stream = self.source.batches(cfg.batch_size, seed=cfg.seed, start_batch=self.step)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="crosscoder", disable=not progress)
        self.crosscoder.train()
        try:
            while self.step < cfg.steps:
                stats = self._train_step(next(stream)["activations"].to(self.device, non_blocking=True))
                self.step += 1
                for key, value in stats.items():
                    window[key] = window.get(key, 0.0) + value
                window["n"] = window.get("n", 0.0) + 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = self._log_row(window)
                    window = {}
                    bar.set_postfix(loss=f"{row['loss']:.4g}", l0=f"{row['l0']:.1f}", dead=row["dead_latents"])
                    if log is not None:
                        log.write(row)
                    if self.on_log is not None:
                        self.on_log(row)
                if self.out_dir is not None and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    self.save_checkpoint()
        finally:
            bar.close()
            if log is not None:
                log.close()
        self.crosscoder.eval()
        if self.out_dir is not None:
            save_crosscoder(self.crosscoder, self.out_dir / files.CROSSCODER)
        return self.crosscoder

    @torch.no_grad()
    def _initialise_from_data(self) -> None:
        cfg = self.config
        stream = self.source.batches(cfg.batch_size, seed=cfg.seed, start_batch=0)
        sample = torch.cat([next(stream)["activations"] for _ in range(max(1, cfg.scale_batches))]).to(self.device)
        self.crosscoder.input_scale.copy_(estimate_scales(sample))
        self.crosscoder.init_decoder_bias(self.crosscoder.normalize(sample[: cfg.batch_size]))

    def _train_step(self, raw: torch.Tensor) -> dict[str, float]:
        cfg, cc = self.config, self.crosscoder
        x = cc.normalize(raw)
        pre = cc.pre_activations(x)
        norms = cc.decoder_norms().sum(dim=-1)
        f = batch_topk(pre, pre * norms, cc.config.k) if cc.config.sparsity == "batchtopk" else pre
        x_hat = cc.decode(f)
        recon = (x - x_hat).pow(2).sum(dim=(1, 2)).mean()
        dead = self.tokens_since_fired >= cfg.dead_tokens
        if cc.config.sparsity == "batchtopk":
            penalty = auxk_loss(cc, (x - x_hat).detach(), pre, dead, self.k_aux)
            loss = recon + cfg.auxk_weight * penalty
        else:
            penalty = (f * norms).sum(dim=-1).mean()
            loss = recon + cfg.l1_coeff * penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            active = f > 0
            self.tokens_since_fired += raw.shape[0]
            self.tokens_since_fired[active.any(dim=0)] = 0
            if cc.config.sparsity == "batchtopk" and self.step >= cfg.threshold_start_step:
                self._update_threshold((f * norms)[active])
            stats = {"loss": float(loss), "recon_loss": float(recon),
                     ("auxk_loss" if cc.config.sparsity == "batchtopk" else "l1_loss"): float(penalty),
                     "l0": float(active.sum(dim=-1).float().mean())}
            for name, fve in zip(model_names(cc.config.n_models), fraction_of_variance_explained(x, x_hat),
                                 strict=True):
                stats[f"fve_{name}"] = float(fve)
        return stats

    def _update_threshold(self, kept_scores: torch.Tensor) -> None:
        smallest = kept_scores.min() if kept_scores.numel() else kept_scores.new_zeros(())
        threshold = self.crosscoder.threshold
        decay = self.config.threshold_decay
        threshold.copy_(smallest if threshold < 0 else decay * threshold + (1 - decay) * smallest)

    def _log_row(self, window: dict[str, float]) -> dict[str, Any]:
        n = window.pop("n")
        row: dict[str, Any] = {"step": self.step, "tokens": self.step * self.config.batch_size,
                               "lr": self.scheduler.get_last_lr()[0]}
        row.update({key: value / n for key, value in window.items()})
        row["dead_latents"] = int((self.tokens_since_fired >= self.config.dead_tokens).sum())
        row["threshold"] = float(self.crosscoder.threshold)
        return row
