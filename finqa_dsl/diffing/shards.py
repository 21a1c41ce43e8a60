"""Paired activations on disk: safetensors shards plus a JSON manifest, written streaming, read shuffled.

A shard holds ``activations`` ``(rows, n_models, d_model)`` (float16/bfloat16/float32) and, per row,
``token_ids``, ``example_ids`` and ``positions``. The manifest (``manifest.json``) lists the shards with
their row counts; it is rewritten after every shard (``complete`` turns true on ``close``), so a crash
leaves a readable folder of the finished shards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from finqa_dsl.core.io import atomic_write_json
from finqa_dsl.diffing.files import MANIFEST

FORMAT = "finqa-dsl-paired-activations"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
COLUMNS = ("activations", "token_ids", "example_ids", "positions")
_INDEX_DTYPES = {"token_ids": torch.int64, "example_ids": torch.int64, "positions": torch.int32}


class ShardWriter:
    """Buffer rows and write a shard every ``rows_per_shard`` rows; memory stays flat in the number of rows."""

    def __init__(self, folder: str | Path, *, d_model: int, n_models: int = 2, dtype: str = "bfloat16",
                 rows_per_shard: int = 65_536, metadata: dict[str, Any] | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.d_model, self.n_models, self.dtype = d_model, n_models, dtype
        self.rows_per_shard = rows_per_shard
        self.metadata = dict(metadata or {})
        self.shards: list[dict[str, Any]] = []
        self._buffer: dict[str, list[torch.Tensor]] = {name: [] for name in COLUMNS}
        self._buffered = 0

    def add(self, activations: torch.Tensor, token_ids: torch.Tensor, example_ids: torch.Tensor,
            positions: torch.Tensor) -> None:
        """Append rows: ``activations`` ``(rows, n_models, d_model)`` and three ``(rows,)`` index columns."""
        rows = activations.shape[0]
        if tuple(activations.shape[1:]) != (self.n_models, self.d_model):
            raise ValueError(f"activations must be (rows, {self.n_models}, {self.d_model}), "
                             f"got {tuple(activations.shape)}")
        columns = {"activations": activations.detach().to("cpu", DTYPES[self.dtype])}
        for name, values in (("token_ids", token_ids), ("example_ids", example_ids), ("positions", positions)):
            if values.shape != (rows,):
                raise ValueError(f"{name} must have shape ({rows},), got {tuple(values.shape)}")
            columns[name] = values.detach().to("cpu", _INDEX_DTYPES[name])
        for name, values in columns.items():
            self._buffer[name].append(values)
        self._buffered += rows
        while self._buffered >= self.rows_per_shard:
            self._flush(self.rows_per_shard)

    def close(self) -> Path:
        """Write the last partial shard and the final manifest; return the manifest path."""
        if self._buffered:
            self._flush(self._buffered)
        return self._write_manifest(complete=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()

    def _flush(self, rows: int) -> None:
        joined = {name: torch.cat(parts) for name, parts in self._buffer.items()}
        shard = {name: values[:rows].contiguous() for name, values in joined.items()}
        self._buffer = {name: [values[rows:]] for name, values in joined.items()}
        self._buffered -= rows
        name = f"shard_{len(self.shards):05d}.safetensors"
        tmp = self.folder / f".{name}.tmp"
        save_file(shard, tmp)
        tmp.replace(self.folder / name)
        self.shards.append({"file": name, "rows": rows})
        self._write_manifest(complete=False)

    def _write_manifest(self, *, complete: bool) -> Path:
        path = self.folder / MANIFEST
        atomic_write_json(path, {
            "format": FORMAT, "version": 1, "complete": complete, "n_models": self.n_models,
            "d_model": self.d_model, "dtype": self.dtype, "rows": sum(s["rows"] for s in self.shards),
            "shards": self.shards, "metadata": self.metadata,
        })
        return path


class ActivationShards:
    """A folder written by ``ShardWriter``: its manifest, whole-shard loads and shuffled batches."""

    def __init__(self, folder: str | Path, *, shards_in_memory: int = 4):
        self.folder = Path(folder)
        self.shards_in_memory = shards_in_memory
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no activation manifest (write one with scripts/collect_activations.py)")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
        self.manifest = manifest
        self.n_models: int = manifest["n_models"]
        self.d_model: int = manifest["d_model"]
        self.shard_rows: list[int] = [s["rows"] for s in manifest["shards"]]
        self.rows: int = sum(self.shard_rows)
        if not self.rows:
            raise ValueError(f"{path}: the manifest lists no rows")

    def load_shard(self, index: int) -> dict[str, torch.Tensor]:
        return load_file(self.folder / self.manifest["shards"][index]["file"])

    def epoch(self, epoch: int, *, seed: int,
              columns: tuple[str, ...] = ("activations",)) -> Iterator[dict[str, torch.Tensor]]:
        """Every row of the folder exactly once, shuffled, as consecutive chunks.

        Shard order is permuted per (seed, epoch); ``shards_in_memory`` shards at a time are loaded and their
        rows permuted together. The order is a function of (seed, epoch, shards_in_memory) only.
        """
        yield from self._epoch_from(epoch, 0, seed=seed, columns=columns)

    def batches(self, batch_size: int, *, seed: int, start_batch: int = 0,
                columns: tuple[str, ...] = ("activations",)) -> Iterator[dict[str, torch.Tensor]]:
        """Endless shuffled batches over epochs, each row once per epoch (an epoch's last partial batch is
        dropped). Batch ``start_batch`` onward, without reading the skipped shard groups."""
        per_epoch = self.rows // batch_size
        if per_epoch == 0:
            raise ValueError(f"batch size {batch_size} exceeds the {self.rows} rows in {self.folder}")
        epoch, skip = divmod(start_batch, per_epoch)
        while True:
            pending: list[dict[str, torch.Tensor]] = []
            have = 0
            for chunk in self._epoch_from(epoch, skip * batch_size, seed=seed, columns=columns):
                pending.append(chunk)
                have += len(chunk[columns[0]])
                if have < batch_size:
                    continue
                joined = {name: torch.cat([c[name] for c in pending]) for name in columns}
                whole = have - have % batch_size
                for start in range(0, whole, batch_size):
                    yield {name: values[start:start + batch_size] for name, values in joined.items()}
                pending = [{name: values[whole:] for name, values in joined.items()}]
                have -= whole
            epoch, skip = epoch + 1, 0

    def _epoch_from(self, epoch: int, skip_rows: int, *, seed: int,
                    columns: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self.shard_rows))
        for start in range(0, len(order), self.shards_in_memory):
            group = order[start:start + self.shards_in_memory]
            group_rows = sum(self.shard_rows[i] for i in group)
            permutation = torch.from_numpy(rng.permutation(group_rows))
            if skip_rows >= group_rows:
                skip_rows -= group_rows
                continue
            loaded = [self.load_shard(int(i)) for i in group]
            joined = {name: torch.cat([shard[name] for shard in loaded]) for name in columns}
            rows = permutation[skip_rows:]
            skip_rows = 0
            yield {name: values[rows] for name, values in joined.items()}
