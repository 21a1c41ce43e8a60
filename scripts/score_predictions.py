"""Re-score a predictions JSONL against FinQA gold with the official metric semantics.

    python scripts/score_predictions.py __output__/<run>/test_predictions.jsonl [--gold FinQA/dataset/test.json]

Each line needs ``id`` and the prediction text: ``generation`` (the driver's files) or ``prediction``, or the
field ``--prediction_field`` names. Predictions join the gold by id; ids absent from the gold are left out
and counted, ids repeated on several lines are each scored (as the official evaluator does) and counted.
The target is the lines' own ``target_field`` (``--target_field`` overrides it; lines without one are
programs); code predictions run in the sandbox. The gold defaults to the ``test_file`` of the run folder's
``args.json`` beside the predictions, so a run's predictions scored with no flag give its test_metrics.json.
Prints one JSON object. A bad file ends with one message naming the file, the line or record and the field,
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.metrics import N_DUPLICATE_IDS
from finqa_dsl.core.prediction_rows import ID, common_target_field, read_prediction_rows
from finqa_dsl.core.targets import TARGET_FIELDS, get_target, score_predictions
from finqa_dsl.runs import files as run_files
from finqa_dsl.sandbox.generations import code_runner

USAGE_ERROR = 2
DEFAULT_TARGET_FIELD = "program"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="JSONL, one prediction per line")
    parser.add_argument("--gold", help="FinQA .json (list) or .jsonl with the gold examples (default: the "
                                       "test_file of the run folder's args.json)")
    parser.add_argument("--prediction_field", help="the field holding the model output (default: generation, "
                                                   "else prediction)")
    parser.add_argument("--target_field", choices=TARGET_FIELDS,
                        help=f"what the predictions are (default: their target_field, else {DEFAULT_TARGET_FIELD})")
    return parser.parse_args(argv)


def run_gold_file(predictions: Path) -> Path:
    """The ``test_file`` of the run that wrote ``predictions`` (its folder's ``args.json``); a relative path is
    taken from the current folder, else from the folder the run started in (the one above ``__output__``)."""
    args_path = predictions.parent / run_files.ARGS
    try:
        test_file = json.loads(args_path.read_text(encoding="utf-8"))["test_file"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{predictions}: no run folder {run_files.ARGS} with a test_file beside it: "
                         "pass --gold") from None
    candidates = [Path(test_file)] if Path(test_file).is_absolute() else \
        [Path(test_file), predictions.resolve().parent.parent.parent / test_file]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"{args_path}: test_file {test_file} is not found from here: pass --gold")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictions = Path(args.predictions)
    try:
        rows, text_field = read_prediction_rows(predictions, args.prediction_field)
        gold = Path(args.gold) if args.gold else run_gold_file(predictions)
        examples = load_examples(gold)
        target_field = args.target_field or common_target_field(rows, predictions) or DEFAULT_TARGET_FIELD
    except (UsageError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    with code_runner(get_target(target_field)) as run_code:  # code runs in the sandbox, never in this process
        summary = score_predictions(((row[ID], row[text_field]) for row in rows), examples, target_field,
                                    run_code=run_code)
    summary.update(predictions_file=str(predictions), gold_file=str(gold), prediction_field=text_field)
    if summary[N_DUPLICATE_IDS]:
        print(f"warning: {predictions}: {summary[N_DUPLICATE_IDS]} line(s) repeat an earlier line's id; each is "
              "scored, as the official evaluator does", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
