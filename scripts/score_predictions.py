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
from finqa_dsl.core.finqa_csv import BAD_PROGRAM_CHOICES
from finqa_dsl.core.metrics import N_DUPLICATE_IDS
from finqa_dsl.core.prediction_rows import ID, LOGPROB, SAMPLE, common_target_field, read_prediction_rows
from finqa_dsl.core.targets import TARGET_FIELDS, get_target, score_predictions
from finqa_dsl.runs.folder import run_test_file
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
    parser.add_argument("--bad_program", choices=BAD_PROGRAM_CHOICES, default="skip",
                        help="a row of a study CSV gold file whose program does not execute: skip it (logged, "
                             "counted) or refuse the file")
    parser.add_argument("--target_field", choices=TARGET_FIELDS,
                        help=f"what the predictions are (default: their target_field, else {DEFAULT_TARGET_FIELD})")
    return parser.parse_args(argv)


def gold_of_run(predictions: Path) -> Path:
    """The test file of the run that wrote ``predictions`` (:func:`finqa_dsl.runs.folder.run_test_file`)."""
    try:
        return run_test_file(predictions.parent)
    except UsageError as error:
        raise UsageError(f"{error}: pass --gold") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predictions = Path(args.predictions)
    try:
        rows, text_field = read_prediction_rows(predictions, args.prediction_field)
        gold = Path(args.gold) if args.gold else gold_of_run(predictions)
        examples = load_examples(gold, bad_program=args.bad_program)
        target_field = args.target_field or common_target_field(rows, predictions) or DEFAULT_TARGET_FIELD
    except (UsageError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    with code_runner(get_target(target_field)) as run_code:  # code runs in the sandbox, never in this process
        samples = ((row[ID], row[text_field], {key: row[key] for key in (SAMPLE, LOGPROB) if key in row})
                   for row in rows)
        summary = score_predictions(samples, examples, target_field, run_code=run_code)
    summary.update(predictions_file=str(predictions), gold_file=str(gold), prediction_field=text_field)
    if summary[N_DUPLICATE_IDS]:
        print(f"warning: {predictions}: {summary[N_DUPLICATE_IDS]} line(s) repeat an earlier line's id; each is "
              "scored, as the official evaluator does", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
