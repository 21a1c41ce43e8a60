"""Re-score a predictions JSONL against FinQA gold with the official metric semantics.

    python scripts/score_predictions.py __output__/<run>/test_predictions.jsonl --gold FinQA/dataset/test.json

Each line needs ``id`` and the prediction text (``--prediction_field``, default ``prediction``). Predictions
join the gold by id; ids absent from the gold are left out and counted. ``--target_field`` defaults to the
lines' own ``target_field`` when they all carry the same one, else ``program``. Prints one JSON object.
A bad file ends with one message naming the file, the line or record and the field, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.metrics import score_predictions
from finqa_dsl.core.prompts import TARGET_FIELDS

USAGE_ERROR = 2


class PredictionFileError(ValueError):
    """A predictions file that is not JSONL with an id and a prediction text on every line."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="JSONL, one prediction per line")
    parser.add_argument("--gold", required=True, help="FinQA .json (list) or .jsonl with the gold examples")
    parser.add_argument("--prediction_field", default="prediction", help="the field holding the model output")
    parser.add_argument("--target_field", choices=TARGET_FIELDS,
                        help="what the predictions are (default: their target_field, else program)")
    return parser.parse_args(argv)


def read_predictions(path: str | Path, prediction_field: str) -> list[dict]:
    """Every non-empty line as an object with a non-empty string ``id`` and a string prediction."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise PredictionFileError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise PredictionFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
            if not isinstance(row.get("id"), str) or not row["id"]:
                raise PredictionFileError(f"{where}: field 'id': expected a non-empty string")
            if not isinstance(row.get(prediction_field), str):
                raise PredictionFileError(
                    f"{where} (id {row['id']}): field '{prediction_field}': expected a string "
                    f"(choose the field with --prediction_field)"
                )
            rows.append(row)
    return rows


def infer_target_field(rows: list[dict]) -> str:
    """The rows' common ``target_field`` if it is a known one, else ``program``."""
    fields = {row.get("target_field") for row in rows}
    return fields.pop() if len(fields) == 1 and fields <= set(TARGET_FIELDS) else "program"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = read_predictions(args.predictions, args.prediction_field)
        examples = load_examples(args.gold)
    except (PredictionFileError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    target_field = args.target_field or infer_target_field(rows)
    pairs = ((row["id"], row[args.prediction_field]) for row in rows)
    summary = score_predictions(pairs, examples, target_field)
    summary.update(predictions_file=str(args.predictions), gold_file=str(args.gold),
                   prediction_field=args.prediction_field)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
