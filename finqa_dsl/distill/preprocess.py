"""The first step of distillation: official FinQA JSON splits to the PoT-distillation study's CSV files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from finqa_dsl.core.data import read_records
from finqa_dsl.core.finqa_csv import dumps_csv, rows_from_records
from finqa_dsl.core.io import atomic_write_text

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitResult:
    """What one JSON file became: the CSV written, the rows kept, the ids of the rows dropped."""

    source: Path
    output: Path
    kept: int
    dropped_ids: tuple[str, ...]


def preprocess_dir(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                   splits: Sequence[str] = SPLITS) -> list[SplitResult]:
    """``<input_dir>/<split>.json`` -> ``<output_dir>/<split>.csv`` for each split, each written atomically.
    Every input is read and converted before any file is written, so a bad input leaves no output."""
    sources = [Path(input_dir) / f"{split}.json" for split in splits]
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:
        raise FileNotFoundError(f"no such FinQA split file: {', '.join(missing)}")
    converted = [(source, *rows_from_records(read_records(source), source)) for source in sources]
    results = []
    for source, rows, dropped in converted:
        output = Path(output_dir) / f"{source.stem}.csv"
        atomic_write_text(output, dumps_csv(rows))
        results.append(SplitResult(source, output, len(rows), tuple(dropped)))
    return results
