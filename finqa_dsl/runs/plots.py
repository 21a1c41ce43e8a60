"""PNG plots of a run folder: loss curves and the test latency histogram."""

from __future__ import annotations

from pathlib import Path

from finqa_dsl.core.io import read_jsonl_tolerant
from finqa_dsl.runs import files as run_files


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
