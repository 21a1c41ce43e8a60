#!/usr/bin/env python
"""A base model and its fine-tuned version side by side on one FinQA example: both generations, the executed
answers and the gold. The example comes from a split by id, or is a question and context given here.

    python scripts/inference.py __output__/smollm2-lora-sample/final_model \\
        --test_file FinQA/sample/test.json --id <example id>
    python scripts/inference.py merged/ --base_model HuggingFaceTB/SmolLM2-135M-Instruct \\
        --question "What is the change in revenue?" --context "| revenue | 5735 | 5829 |"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from finqa_dsl.core.context import INPUT_MODES, TABLE_FORMATS, ContextConfig
from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.targets import TARGET_FIELDS
from finqa_dsl.inference.side_by_side import compare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("finetuned_model", help="Adapter folder (e.g. a run's final_model/), merged folder or hub id.")
    parser.add_argument("--base_model", help="Base model (default: the adapter's own base).")
    parser.add_argument("--test_file", help="FinQA JSON/JSONL holding the example.")
    parser.add_argument("--id", help="Example id in --test_file.")
    parser.add_argument("--question", help="A question of your own (instead of --test_file/--id).")
    parser.add_argument("--context", default="", help="Its context: text and table rows (| a | b |).")
    parser.add_argument("--target_field", default="program", choices=TARGET_FIELDS)
    parser.add_argument("--input_mode", default="gold", choices=INPUT_MODES)
    parser.add_argument("--table_format", default="pipe", choices=TABLE_FORMATS,
                        help="How table rows read: as the model was trained (finetune.py's --table_format).")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    try:
        example = _example(args)
        result = compare(args.finetuned_model, args.base_model, example=example, question=args.question,
                         context=args.context, target_field=args.target_field,
                         context_config=ContextConfig(input_mode=args.input_mode, table_format=args.table_format),
                         max_new_tokens=args.max_new_tokens)
    except (UsageError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _example(args):
    if (args.question is None) == (args.id is None):
        raise UsageError("give either --test_file with --id, or --question (with --context).")
    if args.question is not None:
        return None
    if not args.test_file:
        raise UsageError("--id needs --test_file.")
    matches = [example for example in load_examples(args.test_file) if example.id == args.id]
    if not matches:
        raise UsageError(f"{args.test_file}: no example with id {args.id!r}.")
    return matches[0]


if __name__ == "__main__":
    sys.exit(main())
