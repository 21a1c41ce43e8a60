"""Write FinQA prompts as JSONL (id, question, context, prompt, target) for inspection or training.

    python scripts/make_noisy_gold_dataset.py --input_file FinQA/sample/train.json \
        --output_file __output__/noisy_train.jsonl --noisy_text_distractors 3 --noisy_table_distractors 1

The same arguments always give a byte-identical file. A bad dataset file ends with one message and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from finqa_dsl.core.context import INPUT_MODES, TABLE_FORMATS, ContextConfig
from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.io import atomic_write_jsonl
from finqa_dsl.core.prompts import build_prompt_records, select_few_shot
from finqa_dsl.core.targets import TARGET_FIELDS

USAGE_ERROR = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ContextConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_file", required=True, help="FinQA .json (list) or .jsonl")
    parser.add_argument("--output_file", required=True, help="JSONL to write (atomically)")
    parser.add_argument("--target_field", choices=TARGET_FIELDS, default="program")
    parser.add_argument("--input_mode", choices=INPUT_MODES, default="noisy_gold")
    parser.add_argument("--noisy_text_distractors", type=int, default=defaults.text_distractors,
                        help="noisy_gold: non-evidence sentences added")
    parser.add_argument("--noisy_table_distractors", type=int, default=defaults.table_distractors,
                        help="noisy_gold: non-evidence table rows added")
    parser.add_argument("--noisy_context_seed", type=int, default=defaults.seed,
                        help="noisy_gold: seed of the per-example sampling (with the example id)")
    parser.add_argument("--table_format", choices=TABLE_FORMATS, default=defaults.table_format,
                        help="how table rows read: pipe | sentences (FinQA's row template)")
    parser.add_argument("--tokenizer", help="tokenizer folder or hub id: use its chat template, count tokens")
    parser.add_argument("--max_prompt_tokens", type=int,
                        help="drop context pieces until the prompt fits (needs --tokenizer)")
    parser.add_argument("--few_shot_k", type=int, default=0, help="solved exemplars put before each question")
    parser.add_argument("--few_shot_file", help="FinQA file the exemplars come from (e.g. the train split)")
    parser.add_argument("--few_shot_seed", type=int, default=0, help="seed of the exemplar choice")
    args = parser.parse_args(argv)
    if args.max_prompt_tokens is not None and not args.tokenizer:
        parser.error("--max_prompt_tokens needs --tokenizer to count tokens")
    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 1:
        parser.error(f"--max_prompt_tokens must be >= 1, got {args.max_prompt_tokens}")
    if args.few_shot_k and not args.few_shot_file:
        parser.error("--few_shot_k needs --few_shot_file")
    if min(args.noisy_text_distractors, args.noisy_table_distractors, args.few_shot_k) < 0:
        parser.error("distractor counts and --few_shot_k must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    context_config = ContextConfig(args.input_mode, args.noisy_text_distractors, args.noisy_table_distractors,
                                   args.noisy_context_seed, args.table_format)
    try:
        examples = load_examples(args.input_file)
        few_shot = select_few_shot(load_examples(args.few_shot_file), args.few_shot_k,
                                   target_field=args.target_field, context_config=context_config,
                                   seed=args.few_shot_seed) if args.few_shot_k else []
        records, stats = build_prompt_records(
            examples, target_field=args.target_field, context_config=context_config,
            tokenizer=_load_tokenizer(args.tokenizer), max_prompt_tokens=args.max_prompt_tokens,
            few_shot=few_shot,
        )
        atomic_write_jsonl(args.output_file, (record.as_row() for record in records))
    except (DatasetError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    summary = {"output_file": args.output_file, "records": len(records), "truncation": stats.as_dict()}
    print(json.dumps(summary))
    return 0


def _load_tokenizer(name: str | None):
    if name is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


if __name__ == "__main__":
    sys.exit(main())
