#!/usr/bin/env python
"""Regenerate the embedded default data, FinQA/sample/{train,dev,test}.json, and validate it.

The sample is synthetic and ours (see finqa_dsl/synthetic.py and FinQA/README.md). The output is a pure
function of the arguments: with the defaults it reproduces the committed files byte for byte.

    python scripts/make_sample_data.py [--output_dir FinQA/sample] [--seed 2021] [--train 400 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from finqa_dsl.core.io import atomic_write_text
from finqa_dsl.locations import SAMPLE_DIR
from finqa_dsl.sample.generator import DEFAULT_SEED, DEFAULT_SPLIT_SIZES, dumps_split, generate_splits, validate_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    for split, count in DEFAULT_SPLIT_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=count, help=f"examples in {split}.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = {split: getattr(args, split) for split in DEFAULT_SPLIT_SIZES}
    texts = {split: dumps_split(records) for split, records in generate_splits(sizes, seed=args.seed).items()}
    with tempfile.TemporaryDirectory() as scratch:
        for split, text in texts.items():
            path = Path(scratch) / f"{split}.json"
            path.write_text(text, encoding="utf-8")
            validate_file(path)
    for split, text in texts.items():
        path = args.output_dir / f"{split}.json"
        atomic_write_text(path, text)
        print(f"{path}: {sizes[split]} examples, {len(text.encode('utf-8'))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
