"""Training a crosscoder on a stream of paired activation batches: small, seeded, resumable.

Loss per batch (normalised activations ``x``, reconstruction ``x_hat``):
``recon = mean_b sum_{m,d} (x - x_hat)^2``, plus for BatchTopK ``auxk_weight * AuxK`` and for L1
``l1_coeff * mean_b sum_i f_i sum_m ||d_i^m||``. AuxK (Gao et al. 2024): the top ``auxk_latents`` dead latents'
pre-activations decode (no bias) the detached residual ``x - x_hat``; its squared error is divided by the
residual's variance. A latent is dead once it has not fired for ``dead_tokens`` tokens. The BatchTopK
inference threshold is a running average (``threshold_decay``) of the smallest kept score, from step
``threshold_start_step`` on.

Every default is the published recipe's unless said otherwise (``TrainConfig``): Minder et al. 2025's
``BatchTopKCrossCoderTrainer`` in ``dictionary_learning`` (Adam betas (0.9, 0.999), learning rate
``2e-4 / sqrt(dict_size / 2**14)``, 1,000 warm-up steps, gradient norm clipped at 1.0, AuxK weight 1/32 on
``d_model // 2`` dead latents dead after 10M tokens, threshold from step 1,000 with decay 0.999) and Bussmann
et al. 2024 (BatchTopK). The learning rate falls linearly to 0 over the last ``1 - decay_start`` of training
(dictionary_learning's ``decay_start``; its default is no decay, ours 0.8: see BENCHMARKS.md).

Convergence: at every log step the latents' classes by relative decoder norm (``analysis.Thresholds``) are
compared with those of the previous log step (``class_changed``). Over the settle window, the last
``settle_window`` of the steps before the rate starts to decay (a decaying rate stills every run, finished or
not; without decay, the last ``settle_window`` of training): the share of latents whose class changed, whose
relative norm moved by more than 0.05, and whose decoder direction turned (cosine below 0.95, on a fixed
random 64-dimensional sketch of the decoder, so that no copy of the decoder is kept), all among the latents
alive at the end, and the gain in FVE per model; ``train_summary.json`` says whether the crosscoder settled
(class changes < 2%, moves < 5%, turns < 10%, FVE gain < 0.05: heuristics from the planted benchmark). It
measures movement only: a crosscoder stuck near a poor start (the old shared start at norm 1.0 on the planted
benchmark) moves little and reads as settled; the planted benchmark is what catches that.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from finqa_dsl.core.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, read_jsonl_tolerant
from finqa_dsl.diffing import files
from finqa_dsl.diffing.analysis import CLASSES, class_ids, relative_norm
from finqa_dsl.diffing.crosscoder import (
    Crosscoder,
    CrosscoderConfig,
    batch_topk_indices,
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
    """Optimisation settings. Defaults: Minder et al.'s BatchTopK crosscoder (dictionary_learning's
    ``BatchTopKCrossCoderTrainer``) unless the comment says otherwise."""

    steps: int
    batch_size: int = 2048
    lr: float | None = None  # None: 2e-4 / sqrt(dict_size / 2**14) (dictionary_learning's auto rate)
    beta1: float = 0.9  # Adam betas (0.9, 0.999): dictionary_learning
    beta2: float = 0.999
    warmup_steps: int = 1000  # linear from 0 (dictionary_learning)
    decay_start: float = 0.8  # share of the steps after which the rate falls linearly to 0; 1.0: no decay
    grad_clip_norm: float = 1.0  # 0: no clipping (dictionary_learning clips at 1.0)
    weight_decay: float = 0.0
    auxk_weight: float = 1 / 32  # Gao et al. 2024; dictionary_learning
    auxk_latents: int | None = None  # dead latents that reconstruct the residual; None: d_model // 2
    dead_tokens: int = 10_000_000
    l1_coeff: float = 1.0  # L1 crosscoder only
    threshold_start_step: int = 1000
    threshold_decay: float = 0.999
    scale_batches: int = 4  # batches used to estimate the normalisation constants
    settle_window: float = 0.4  # convergence check: classes now vs at the start of this last share of steps
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or (self.lr is not None and self.lr <= 0):
            raise ValueError(f"steps, batch_size and lr must be positive: {self}")
        if not 0 <= self.decay_start <= 1 or not 0 < self.settle_window < 1:
            raise ValueError(f"decay_start must be in [0, 1] and settle_window in (0, 1): {self}")

    def learning_rate(self, dict_size: int) -> float:
        return self.lr if self.lr is not None else 2e-4 / (dict_size / 2**14) ** 0.5

    def lr_factor(self, step: int) -> float:
        """Multiplier of the rate at ``step`` (0-based): linear warm-up, constant, linear decay to 0."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_from = max(self.warmup_steps, int(self.decay_start * self.steps))
        if step >= decay_from and decay_from < self.steps:
            return max(0.0, (self.steps - step) / (self.steps - decay_from))
        return 1.0


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
    """Normalised squared error of the residual reconstructed by the top ``k_aux`` dead latents (0 if none).

    Works on the dead latents' columns only (gathered once), so its cost scales with the number of dead latents,
    not with the dictionary."""
    dead_ids = dead.nonzero().squeeze(1)
    n_dead = dead_ids.numel()
    if n_dead == 0:
        return pre_activations.new_zeros(())
    pre_dead = pre_activations.index_select(1, dead_ids)  # (batch, n_dead)
    values, indices = pre_dead.topk(min(k_aux, n_dead), dim=-1, sorted=False)
    codes = torch.zeros_like(pre_dead).scatter(-1, indices, values.clamp_min(0))
    decoded = codes @ crosscoder.W_dec.index_select(0, dead_ids).flatten(1)  # no bias
    error = (residual.flatten(1) - decoded).pow(2).sum(dim=1).mean()
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
        self.lr = config.learning_rate(model_config.dict_size)
        self.optimizer = torch.optim.AdamW(self.crosscoder.parameters(), lr=self.lr, betas=(config.beta1, config.beta2),
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.lr_factor)
        self.tokens_since_fired = torch.zeros(model_config.dict_size, dtype=torch.long, device=self.device)
        self.step = 0
        self.k_aux = config.auxk_latents or max(1, model_config.d_model // 2)
        # Convergence: relative norms at the previous log step and at the start of the settle window.
        self.delta_logged = torch.full((model_config.dict_size,), math.nan, dtype=torch.float64)
        self.delta_window = torch.full((model_config.dict_size,), math.nan, dtype=torch.float64)
        # The settle window ends where the rate starts to decay (a decaying rate stills any run, finished or not)
        # and spans ``settle_window`` of the steps.
        decay_from = max(config.warmup_steps, int(config.decay_start * config.steps))
        self.window_end = decay_from if decay_from < config.steps else config.steps
        span = int(round(config.steps * config.settle_window))
        self.window_start = max(0, min(config.steps - 1, self.window_end - span))
        self.window_summary: dict[str, Any] | None = None
        sketch = torch.randn(model_config.n_models * model_config.d_model, 64,
                             generator=torch.Generator().manual_seed(12345))
        self.sketch_matrix = sketch.to(self.device)
        self.sketch_window = torch.full((model_config.dict_size, 64), math.nan)
        self.fve_window: dict[str, float] = {}
        self.last_row: dict[str, Any] = {}
        self._topk_hint: float | None = None
        self.summary: dict[str, Any] = {}

    # --- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"model_config": asdict(self.model_config), "train_config": asdict(self.config),
                "step": self.step, "model": self.crosscoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "tokens_since_fired": self.tokens_since_fired,
                "delta_logged": self.delta_logged, "delta_window": self.delta_window,
                "sketch_window": self.sketch_window, "fve_window": self.fve_window,
                "window_summary": self.window_summary}

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
        self.delta_logged, self.delta_window = blob["delta_logged"], blob["delta_window"]
        self.sketch_window, self.fve_window = blob["sketch_window"], blob["fve_window"]
        self.window_summary = blob["window_summary"]
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
                              {"crosscoder": asdict(self.model_config), "training": asdict(cfg), "lr": self.lr})
        if self.step == 0:
            self._initialise_from_data()
        log = JsonlAppender(log_path) if self.out_dir is not None else None
        window = _Window(self.model_config.n_models, self.device)
        stream = self.source.batches(cfg.batch_size, seed=cfg.seed, start_batch=self.step)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="crosscoder", disable=not progress)
        self.crosscoder.train()
        try:
            while self.step < cfg.steps:
                if self.step == self.window_start:
                    self.delta_window, self.sketch_window = self._delta(), self._sketch()
                if self.step == self.window_end and self.window_summary is None:
                    self.window_summary = self._movement()
                self._train_step(next(stream)["activations"].to(self.device, non_blocking=True), window)
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = self._log_row(window)
                    window = _Window(self.model_config.n_models, self.device)
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
        self.summary = self.convergence_summary()
        logger.info("crosscoder %s: %s", "settled" if self.summary["settled"] else "NOT settled",
                    self.summary["verdict"])
        if self.out_dir is not None:
            save_crosscoder(self.crosscoder, self.out_dir / files.CROSSCODER)
            atomic_write_json(self.out_dir / files.TRAIN_SUMMARY, self.summary)
        return self.crosscoder

    @torch.no_grad()
    def _initialise_from_data(self) -> None:
        cfg = self.config
        stream = self.source.batches(cfg.batch_size, seed=cfg.seed, start_batch=0)
        sample = torch.cat([next(stream)["activations"] for _ in range(max(1, cfg.scale_batches))]).to(self.device)
        self.crosscoder.input_scale.copy_(estimate_scales(sample))
        self.crosscoder.init_decoder_bias(self.crosscoder.normalize(sample[: cfg.batch_size]))

    def _train_step(self, raw: torch.Tensor, window: _Window) -> None:
        """One optimiser step. No Python work per latent and no host sync beyond AuxK's dead count: the
        statistics stay on the device in ``window`` until the next log row."""
        cfg, cc = self.config, self.crosscoder
        x = cc.normalize(raw)
        pre = cc.pre_activations(x)
        norms = cc.decoder_norms().sum(dim=-1)
        topk = cc.config.sparsity == "batchtopk"
        if topk:
            with torch.no_grad():
                top, smallest = batch_topk_indices(pre * norms, cc.config.k, hint=self._topk_hint)
                mask = torch.zeros(pre.numel(), dtype=pre.dtype, device=pre.device).index_fill_(0, top, 1.0)
            self._topk_hint = 0.9 * float(smallest)  # next batch ranks only the scores above this
            f = pre * mask.view_as(pre)
            fired, active_count = top % pre.shape[1], top.numel()
        else:
            f = pre
            active = f > 0
            fired, active_count = active.any(dim=0).nonzero().squeeze(1), active.sum()
        x_hat = cc.decode(f)
        error = x - x_hat
        per_model = error.pow(2).sum(dim=2).mean(dim=0)  # (n_models,)
        recon = per_model.sum()
        if topk:
            dead = self.tokens_since_fired >= cfg.dead_tokens
            penalty = auxk_loss(cc, error.detach(), pre, dead, self.k_aux)
            loss = recon + cfg.auxk_weight * penalty
        else:
            penalty = (f * norms).sum(dim=-1).mean()
            loss = recon + cfg.l1_coeff * penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(cc.parameters(), cfg.grad_clip_norm, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.tokens_since_fired += raw.shape[0]
            self.tokens_since_fired.index_fill_(0, fired, 0)
            if topk and self.step >= cfg.threshold_start_step:
                self._update_threshold(smallest)
            window.add(x, per_model, loss, penalty, active_count)

    def _update_threshold(self, smallest: torch.Tensor) -> None:
        threshold = self.crosscoder.threshold
        decay = self.config.threshold_decay
        threshold.copy_(torch.where(threshold < 0, smallest, decay * threshold + (1 - decay) * smallest))

    def _delta(self) -> torch.Tensor:
        return relative_norm(self.crosscoder.decoder_norms().detach()).cpu() if self.model_config.n_models == 2 \
            else torch.zeros(self.model_config.dict_size, dtype=torch.float64)

    @torch.no_grad()
    def _sketch(self) -> torch.Tensor:
        w = self.crosscoder.W_dec.detach().flatten(1)  # (dict_size, n_models * d_model)
        return (w @ self.sketch_matrix).cpu()

    def _log_row(self, window: _Window) -> dict[str, Any]:
        row: dict[str, Any] = {"step": self.step, "tokens": self.step * self.config.batch_size,
                               "lr": self.scheduler.get_last_lr()[0]}
        row.update(window.row(model_names(self.model_config.n_models),
                              "auxk_loss" if self.model_config.sparsity == "batchtopk" else "l1_loss"))
        row["dead_latents"] = int((self.tokens_since_fired >= self.config.dead_tokens).sum())
        row["threshold"] = float(self.crosscoder.threshold)
        delta = self._delta()
        row["class_changed"] = _changed_share(self.delta_logged, delta)
        self.delta_logged = delta
        if self.step >= self.window_start and not self.fve_window:
            self.fve_window = {key: value for key, value in row.items() if key.startswith("fve_")}
        self.last_row = row
        return row

    def _movement(self) -> dict[str, Any]:
        """How much the live latents moved between the start of the settle window and now (see the module
        docstring). Dead latents are left out: AuxK moves them without their reading anything."""
        delta = self._delta()
        live = ~(self.tokens_since_fired >= self.config.dead_tokens).cpu()
        changed = moved = turned = None
        if not bool(torch.isnan(self.delta_window).all()) and bool(live.any()):
            changed = float((class_ids(self.delta_window) != class_ids(delta))[live].double().mean())
            moved = float(((delta - self.delta_window).abs().nan_to_num(0.0) > 0.05)[live].double().mean())
            cosine = torch.nn.functional.cosine_similarity(self._sketch(), self.sketch_window, dim=-1)
            turned = float((cosine[live] < 0.95).double().mean())
        elif not bool(torch.isnan(self.delta_window).all()):
            changed = moved = turned = 0.0
        gains = {key[4:]: self.last_row[key] - value for key, value in self.fve_window.items() if key in self.last_row}
        return {"window": [self.window_start, self.step], "class_changed": changed, "relative_norm_moved": moved,
                "direction_turned": turned, "fve_gain": gains}

    def convergence_summary(self) -> dict[str, Any]:
        """Whether the latents still moved over the settle window (the last ``settle_window`` of the steps before
        the rate decays), with dead latents and the last log row's loss and FVE per model."""
        movement = self.window_summary if self.window_summary is not None else self._movement()
        changed, moved, turned = (movement[key] for key in ("class_changed", "relative_norm_moved",
                                                            "direction_turned"))
        gains = movement["fve_gain"]
        ids = class_ids(self._delta())
        dead = int((self.tokens_since_fired >= self.config.dead_tokens).sum())
        last = self.last_row
        settled = (changed is not None and moved is not None and turned is not None and changed < 0.02
                   and moved < 0.05 and turned < 0.10 and all(g < 0.05 for g in gains.values()))
        start, end = movement["window"]
        verdict = (f"from step {start} to {end}, of the live latents {100 * (changed or 0):.1f}% changed class, "
                   f"{100 * (moved or 0):.1f}% moved their relative norm by > 0.05, {100 * (turned or 0):.1f}% "
                   f"turned their decoder direction; FVE rose by "
                   + ", ".join(f"{gain:.3f} ({key})" for key, gain in gains.items())
                   + f"; {dead} dead latents of {self.model_config.dict_size} at the end")
        if not settled:
            verdict += "; train longer (or check the learning rate) before reading the classes"
        return {"step": self.step, "tokens": self.step * self.config.batch_size, "settled": settled,
                "verdict": verdict, "window_start_step": start, "window_end_step": end, "class_changed": changed,
                "relative_norm_moved": moved, "direction_turned": turned, "fve_gain": gains, "dead_latents": dead,
                "dead_share": dead / self.model_config.dict_size,
                "counts": {name: int((ids == i).sum()) for i, name in enumerate(CLASSES)},
                **{key: last[key] for key in last if key.startswith(("fve_", "recon_", "l0"))}}


def _changed_share(before: torch.Tensor, after: torch.Tensor) -> float | None:
    """Share of latents whose class differs between two relative-norm vectors; None if ``before`` is unset."""
    if bool(torch.isnan(before).all()):
        return None
    return float((class_ids(before) != class_ids(after)).double().mean())


class _Window:
    """Per-step statistics summed on the device between two log rows (one host sync per row)."""

    def __init__(self, n_models: int, device: torch.device):
        zeros = partial(torch.zeros, dtype=torch.float64, device=device)
        self.steps, self.tokens = 0, 0
        self.loss, self.penalty, self.active = zeros(()), zeros(()), zeros(())
        self.recon, self.error, self.x_sum, self.x_sq = zeros(n_models), zeros(n_models), None, zeros(n_models)

    @torch.no_grad()
    def add(self, x: torch.Tensor, per_model: torch.Tensor, loss: torch.Tensor, penalty: torch.Tensor,
            active_count: torch.Tensor | int) -> None:
        self.steps += 1
        self.tokens += x.shape[0]
        self.loss += loss.detach()
        self.penalty += penalty.detach()
        self.recon += per_model.detach()
        self.active += active_count
        self.error += per_model.detach() * x.shape[0]  # squared error summed over the batch, per model
        sums = x.sum(dim=0).double()
        self.x_sum = sums if self.x_sum is None else self.x_sum + sums
        self.x_sq += x.pow(2).sum(dim=(0, 2))

    def row(self, names: tuple[str, ...], penalty_name: str) -> dict[str, float]:
        n = max(1, self.steps)
        variance = self.x_sq - (self.x_sum.pow(2).sum(dim=-1) / max(1, self.tokens) if self.x_sum is not None else 0)
        fve = (1 - self.error / variance.clamp_min(1e-12)).tolist()
        row = {"loss": float(self.loss) / n, "recon_loss": float(self.recon.sum()) / n,
               penalty_name: float(self.penalty) / n, "l0": float(self.active) / max(1, self.tokens)}
        for name, recon, value in zip(names, self.recon.tolist(), fve, strict=True):
            row[f"recon_{name}"] = recon / n
            row[f"fve_{name}"] = value
        return row
