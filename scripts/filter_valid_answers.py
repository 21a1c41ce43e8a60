#!/usr/bin/env python
"""Keep the rows of a teacher CSV whose executed answer matches the label; write the kept and the dropped rows
and print the counts per reason (no code, syntax error, exception, timeout, no ans, wrong value, ...).

    python scripts/filter_valid_answers.py data/teacher/train.csv --output_file data/filtered/train.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finqa_dsl.core.data import DatasetError
from finqa_dsl.distill.filtering import filter_rows, read_teacher_csv, write_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_file", help="Teacher CSV from scripts/generate_teacher_code.py, or the study's own "
                                           "(prompt, generated_code, actual_answer, expected_answer): the kept "
                                           "rows keep the input's columns.")
    parser.add_argument("--output_file", required=True, help="CSV of the kept rows.")
    parser.add_argument("--dropped_file", help="CSV of the dropped rows with drop_reason (default: "
                                               "<output>.dropped.csv).")
    args = parser.parse_args(argv)
    output = Path(args.output_file)
    dropped_path = Path(args.dropped_file) if args.dropped_file else output.with_suffix(".dropped.csv")
    try:
        columns, rows = read_teacher_csv(args.input_file)
    except (OSError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kept, dropped, summary = filter_rows(rows)
    write_rows(output, columns, kept)
    write_rows(dropped_path, [*columns, "drop_reason"], dropped)
    print(json.dumps({**summary.as_dict(), "kept_file": str(output), "dropped_file": str(dropped_path)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
