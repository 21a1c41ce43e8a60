#!/usr/bin/env python
"""Fine-tune an instruction-tuned causal LM on FinQA, then generate, execute and score the test set.

Project flags (see ``--help``) sit beside every standard ``transformers.TrainingArguments`` flag.
The run folder's path is printed as the last line of stdout; logs go to stderr.
Example, on the embedded synthetic sample with the default model::

    python scripts/finetune.py --peft lora --do_train --do_test \\
        --train_file FinQA/sample/train.json --eval_file FinQA/sample/dev.json \\
        --test_file FinQA/sample/test.json --output_folder smollm2-lora-sample

The same from a config file, with one flag overridden: ``python scripts/finetune.py --config run.yaml --seed 1``.
"""

from __future__ import annotations

import sys

from finqa_dsl.core.data import DatasetError
from finqa_dsl.core.errors import UsageError
from finqa_dsl.driver.pipeline import execute
from finqa_dsl.driver.plan import prepare
from finqa_dsl.models.default_model import DefaultModelUnavailable
from finqa_dsl.runs.processes import configure_logging


def main(argv: list[str] | None = None) -> int:
    try:
        plan = prepare(sys.argv[1:] if argv is None else argv)
    except (ValueError, DatasetError, DefaultModelUnavailable) as error:  # ValueError: UsageError, TrainingArguments
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(plan.training_args)
    try:
        folder = execute(plan)
    except (UsageError, DatasetError, DefaultModelUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(folder)  # the last line of stdout, for scripts that chain runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
