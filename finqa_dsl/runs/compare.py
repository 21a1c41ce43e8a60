"""Side-by-side table of several runs' test metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finqa_dsl.core.metrics import with_current_keys
from finqa_dsl.runs import files as run_files


def compare_runs(folders: list[Path], metric_names: tuple[str, ...]) -> str:
    """A plain-text table of the named test metrics of several run folders, one row per run (metric keys an
    earlier version wrote are read as today's)."""
    rows = []
    for folder in folders:
        path = folder / run_files.TEST_METRICS
        if not path.exists():
            raise FileNotFoundError(f"{path}: no test metrics; was the run made with --do_test?")
        metrics = with_current_keys(json.loads(path.read_text(encoding="utf-8")))
        rows.append([folder.name, *(_format_metric(metrics.get(name)) for name in metric_names)])
    header = ["run", *metric_names]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
                     for row in [header, *rows])


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
