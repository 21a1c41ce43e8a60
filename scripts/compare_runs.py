#!/usr/bin/env python
"""Print the test metrics of run folders side by side: ``python scripts/compare_runs.py RUN_DIR...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finqa_dsl.core.metrics import HEADLINE_METRICS
from finqa_dsl.runs.compare import compare_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        print(compare_runs(args.run_folders, HEADLINE_METRICS))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
