"""Convert official-format FinQA JSON splits into the PoT-distillation study's CSVs (one row per example).

    python -m scripts.preprocess_finqa --input_dir FinQA/sample --output_dir data/clean/FinQA

Writes ``<output_dir>/<split>.csv`` for each ``--splits`` name (``<input_dir>/<split>.json``) with the columns
``id, pre_text, post_text, table, question, answer, program, exe_ans`` (cell format: finqa_dsl.core.finqa_csv).
Rows with an empty question or answer are dropped; each split's line names them. Files are written atomically;
a missing or malformed input ends with one message and exit 2, and then no file is written.
"""

from __future__ import annotations

import argparse
import sys

from finqa_dsl.core.data import DatasetError
from finqa_dsl.distill.preprocess import SPLITS, preprocess_dir

USAGE_ERROR = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_dir", required=True, help="folder holding <split>.json in the official layout")
    parser.add_argument("--output_dir", required=True, help="folder the <split>.csv files are written to")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="split names (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = preprocess_dir(args.input_dir, args.output_dir, args.splits)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    for result in results:
        dropped = f"dropped {len(result.dropped_ids)}"
        if result.dropped_ids:
            dropped += f" with an empty question or answer: {', '.join(result.dropped_ids)}"
        print(f"{result.source.stem}: kept {result.kept} rows -> {result.output}; {dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
