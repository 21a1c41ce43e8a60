"""Weights & Biases logging when a project is given; nothing otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
        """End the run and wait until W&B has written it: ``finish`` alone may return before an offline run's
        records reach its ``.wandb`` file, which ``teardown`` (shutting W&B's service down) waits for."""
        if self.run is not None:
            self.run.finish()
            self._wandb.teardown()
