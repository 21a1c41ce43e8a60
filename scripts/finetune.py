#!/usr/bin/env python
"""Fine-tune an instruction-tuned causal LM on FinQA, then generate, execute and score the test set.

Project flags (see ``--help``) sit beside every standard ``transformers.TrainingArguments`` flag.
The run folder's path is printed as the last line of stdout; logs go to stderr. Under ``torchrun`` or
``accelerate launch`` every process runs this script (README: "Several processes"; without a GPU add ``--use_cpu``).
Example, on the embedded synthetic sample with the default model::

    python scripts/finetune.py --peft lora --do_train --do_test \\
        --train_file FinQA/sample/train.json --eval_file FinQA/sample/dev.json \\
        --test_file FinQA/sample/test.json --output_folder smollm2-lora-sample
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser, TrainingArguments

from finqa_dsl.core.data import DatasetError
from finqa_dsl.core.errors import UsageError
from finqa_dsl.driver.arguments import DataArguments, GenerationArguments, ModelArguments, RunArguments
from finqa_dsl.driver.pipeline import run
from finqa_dsl.models.default_model import DefaultModelUnavailable
from finqa_dsl.runs.processes import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((ModelArguments, DataArguments, GenerationArguments, RunArguments, TrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) == 1 and argv[0].endswith(".json"):
            arguments = _parse_config_file(parser, argv[0])
        else:
            arguments = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # TrainingArguments checks flags against the hardware as it parses them
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(arguments[-1])
    try:
        folder = run(*arguments)
    except (UsageError, DatasetError, DefaultModelUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(folder)  # the last line of stdout, for scripts that chain runs
    return 0


def _parse_config_file(parser: HfArgumentParser, path: str):
    """The dataclasses from a JSON arguments file; a missing or invalid file is a ValueError naming it."""
    try:
        return parser.parse_json_file(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such arguments file") from None
    except (OSError, ValueError) as error:  # unreadable, not JSON, or keys that are no flag
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None


if __name__ == "__main__":
    sys.exit(main())
