"""Run folders, timing and memory, plots and W&B: everything a run writes besides predictions."""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finqa_dsl import run_files
from finqa_dsl.io import atomic_write_json, read_jsonl_tolerant

logger = logging.getLogger(__name__)

# Arguments that may change between an interrupted run and its resumption in the same folder.
_RESUME_NEUTRAL_ARGS = {"resume_from_checkpoint", "wandb_mode", "wandb_run_name", "logging_dir",
                        "resolved_output_dir"}


def resolve_run_folder(root: Path, name: str, args: dict[str, Any]) -> Path:
    """Pick the folder of this run under ``root``.

    A finished run (it wrote ``timing.json``) is never overwritten: the new run gets ``name--2``, ``--3``...
    An unfinished folder whose ``args.json`` matches ``args`` is reused, so an interrupted run resumes there.
    """
    candidate, suffix = root / name, 1
    while candidate.exists():
        if not (candidate / run_files.TIMING).exists() and _same_args(candidate / run_files.ARGS, args):
            return candidate
        suffix += 1
        candidate = root / f"{name}--{suffix}"
    return candidate


def _same_args(path: Path, args: dict[str, Any]) -> bool:
    if not path.exists():
        return False
    saved = json.loads(path.read_text(encoding="utf-8"))

    def relevant(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in _RESUME_NEUTRAL_ARGS}

    return relevant(saved) == relevant(json.loads(json.dumps(args, default=str)))


def peak_host_memory_bytes() -> int:
    """Peak resident memory of this process (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Timing:
    """Wall-clock durations of the run's phases, written to ``timing.json``."""

    def __init__(self) -> None:
        self.values: dict[str, float | int] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.values[f"{name}_duration_seconds"] = time.perf_counter() - start

    def write(self, folder: Path) -> dict[str, float | int]:
        """Add memory peaks and write ``timing.json``; this marks the run as finished."""
        import torch

        self.values["peak_host_memory_bytes"] = peak_host_memory_bytes()
        if torch.cuda.is_available():
            self.values["cuda_max_memory_bytes"] = torch.cuda.max_memory_allocated()
        atomic_write_json(folder / run_files.TIMING, self.values)
        return self.values


def plot_loss_curves(folder: Path) -> Path | None:
    """Plot training and eval loss from ``metrics.jsonl`` into ``loss_curves.png``; None if no losses."""
    rows = read_jsonl_tolerant(folder / run_files.METRICS)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    evaluation = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r and "step" in r]
    if not train and not evaluation:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for points, label in ((train, "train loss"), (evaluation, "eval loss")):
        if points:
            ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 30 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(folder.name)
    ax.legend()
    return _save(fig, folder / run_files.LOSS_PLOT)


def plot_latency_histogram(latencies_ms: list[float], folder: Path, *, mode: str) -> Path | None:
    """Histogram of test inference latencies into ``latency_histogram.png``."""
    if not latencies_ms:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(latencies_ms, bins=min(50, max(5, len(latencies_ms) // 5)))
    ax.set_xlabel(f"latency per example (ms, {mode})")
    ax.set_ylabel("examples")
    ax.set_title(folder.name)
    return _save(fig, folder / run_files.LATENCY_PLOT)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


class WandbReporter:
    """Logs to Weights & Biases when a project is given; does nothing otherwise. Works offline."""

    def __init__(self, project: str | None, mode: str, run_name: str, folder: Path, config: dict[str, Any]):
        self.run = None
        if not project or mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        self.run = wandb.run or wandb.init(project=project, mode=mode, name=run_name, dir=str(folder),
                                           config=config)

    def log(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)
            self.run.log(values)

    def log_latency_histogram(self, latencies_ms: list[float]) -> None:
        if self.run is not None and latencies_ms:
            self.run.log({"test/latency_ms": self._wandb.Histogram(latencies_ms)})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def compare_runs(folders: list[Path], metric_names: tuple[str, ...]) -> str:
    """A plain-text table of the named test metrics of several run folders, one row per run."""
    rows = []
    for folder in folders:
        path = folder / run_files.TEST_METRICS
        if not path.exists():
            raise FileNotFoundError(f"{path}: no test metrics; was the run made with --do_test?")
        metrics = json.loads(path.read_text(encoding="utf-8"))
        rows.append([folder.name, *(_format_metric(metrics.get(name)) for name in metric_names)])
    header = ["run", *metric_names]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
                     for row in [header, *rows])


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
