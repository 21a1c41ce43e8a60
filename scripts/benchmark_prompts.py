"""Time building contexts + prompts for 6,251 examples (the official train size) in every input mode:
plain prompts, chat-template prompts, and chat-template prompts truncated to --max_prompt_tokens.

    python scripts/benchmark_prompts.py [--input_file ../shared/FinQA/real/dev.json ...] [--tokenizer DIR]

The real examples are cycled (ids suffixed ``#<cycle>``) to reach --examples records. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from itertools import cycle, islice

from finqa_dsl.core.context import INPUT_MODES, ContextConfig
from finqa_dsl.core.data import Example, load_examples
from finqa_dsl.core.prompts import build_prompt_records
from finqa_dsl.locations import SHARED_DIR

OFFICIAL_TRAIN_SIZE = 6251
SHARED = SHARED_DIR


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_file", nargs="+", default=[str(SHARED / "FinQA/real/dev.json"),
                                                            str(SHARED / "FinQA/real/train.json")])
    parser.add_argument("--tokenizer", default=str(SHARED / "models/qwen2.5-0.5b-instruct"))
    parser.add_argument("--max_prompt_tokens", type=int, default=1024)
    parser.add_argument("--examples", type=int, default=OFFICIAL_TRAIN_SIZE)
    parser.add_argument("--target_field", default="program")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    return parser.parse_args()


def cycled(examples: list[Example], n: int) -> list[Example]:
    """``n`` records from ``examples`` repeated, each id made unique."""
    return [dataclasses.replace(example, id=f"{example.id}#{number // len(examples)}")
            for number, example in enumerate(islice(cycle(examples), n))]


def main() -> None:
    args = parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    pool = [example for path in args.input_file for example in load_examples(path)]
    usable = [example for example in pool if example.gold_inds is not None]  # every mode works on these
    examples = cycled(usable, args.examples)
    settings = [("plain", None, None), ("chat_template", tokenizer, None),
                ("chat_template_truncated", tokenizer, args.max_prompt_tokens)]
    results = []
    for mode in INPUT_MODES:
        for name, tok, limit in settings:
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                _, stats = build_prompt_records(examples, target_field=args.target_field,
                                                context_config=ContextConfig(mode), tokenizer=tok,
                                                max_prompt_tokens=limit)
                best = min(best, time.perf_counter() - start)
            results.append({"input_mode": mode, "prompt": name, "max_prompt_tokens": limit,
                            "seconds": round(best, 3), "examples_per_second": round(len(examples) / best),
                            "truncated": stats.truncated, "over_length": stats.over_length})
    summary = {"examples": len(examples), "distinct_examples": len(usable), "tokenizer": args.tokenizer,
               "target_field": args.target_field, "repeats": args.repeats, "cpu_count": os.cpu_count(),
               "load_average_1min": os.getloadavg()[0], "python": platform.python_version(),
               "results": results}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
