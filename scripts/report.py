#!/usr/bin/env python
"""Where runs' right and wrong answers lie: ``python scripts/report.py RUN_FOLDER [RUN_FOLDER...] [--output_dir DIR]``.

Accuracy by gold program steps, operation, evidence kind and question type, the failure reasons, several runs
side by side and the examples one run gets right and another misses: ``report.md``, ``report.json`` and PNG
charts in DIR (default: ``RUN_FOLDER/report`` for one run, ``report--A--B`` beside the first run for several).
A folder without scored test predictions ends with one message and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.metrics import CORRECT_FLAGS
from finqa_dsl.runs.report import (
    REPORT_MARKDOWN,
    SAMPLE_CHOICES,
    default_output_dir,
    load_run,
    unique_labels,
    write_report,
)

USAGE_ERROR = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folders", nargs="+", type=Path)
    parser.add_argument("--output_dir", type=Path, help="where the report goes (default: see above)")
    parser.add_argument("--correct_field", choices=CORRECT_FLAGS,
                        help="the flag that says a row is right (default: the first its target scores: "
                             "execution_correct, else answer_correct_strict)")
    parser.add_argument("--samples", choices=tuple(SAMPLE_CHOICES), default="greedy",
                        help="runs made with --num_samples: report sample 0 (greedy by default) or the majority "
                             "vote's row of each example (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        labels = unique_labels(args.run_folders)
        runs = [load_run(folder, flag=args.correct_field, label=label, samples=args.samples)
                for folder, label in zip(args.run_folders, labels, strict=True)]
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    output_dir = args.output_dir or default_output_dir(args.run_folders)
    write_report(runs, output_dir)
    print(output_dir / REPORT_MARKDOWN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
