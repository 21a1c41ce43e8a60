"""Wall-clock durations of a run's phases and its peak memory, written to ``timing.json``."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from finqa_dsl.core.io import atomic_write_json
from finqa_dsl.runs import files as run_files


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

    def write(self, folder: Path, world_size: int = 1) -> dict[str, float | int]:
        """Add the memory peaks of this process and write ``timing.json``; this marks the run as finished.
        Under several processes the main process writes it: durations are its wall clock (test inference ends
        when every process has finished and the shards are merged), peaks its own, ``world_size`` the number of
        processes."""
        import torch

        self.values["world_size"] = world_size
        self.values["peak_host_memory_bytes"] = peak_host_memory_bytes()
        if torch.cuda.is_available():
            self.values["cuda_max_memory_bytes"] = torch.cuda.max_memory_allocated()
        atomic_write_json(folder / run_files.TIMING, self.values)
        return self.values
