"""Time the scoring of a peer predictions file (execution + program accuracy), cold and warm.

    python scripts/benchmark_scoring.py [--predictions P.jsonl] [--gold test.json] [--repeats 5]

Two workloads: all lines of the predictions file scored against the gold program and exe_ans that each
line carries (``gold_program``, ``gold_numerical``; no tables, so table steps score as missing rows), and
the lines whose id is in ``--gold``, scored against those examples with their tables. Each workload runs
in a fresh process: its first pass is cold (sympy imported only if some pair needs it, which costs about
0.8 s once; nothing memoised), later passes are warm. Prints one JSON line per workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from finqa_dsl.core.data import Example, load_examples
from finqa_dsl.core.targets import score_predictions
from finqa_dsl.locations import SHARED_DIR

SHARED = SHARED_DIR / "FinQA"
PEER_RUN = "qwen2-5-coder-3b-instruct-full-input_gold-output_program"
DEFAULT_PREDICTIONS = SHARED / "peer_predictions" / PEER_RUN / "test_predictions.jsonl"
DEFAULT_GOLD = SHARED / "real" / "test.json"
WORKLOADS = ("all_lines_own_gold", "joined_with_gold_file")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, default=DEFAULT_PREDICTIONS)
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--repeats", type=int, default=5, help="warm passes after the cold one")
    parser.add_argument("--workload", choices=WORKLOADS, help="run only this one, in this process")
    return parser.parse_args(argv)


def examples_from_lines(rows: list[dict]) -> list[Example]:
    """Gold examples made of what a peer predictions line carries (no table, no text)."""
    return [Example(id=row["id"], question=row["question"], program=row["gold_program"],
                    exe_ans=row["gold_numerical"], answer=None, pre_text=(), post_text=(), table=(),
                    gold_inds=None, raw=row) for row in rows]


def benchmark(name: str, pairs: list[tuple[str, str]], examples: list[Example], repeats: int) -> dict:
    seconds = []
    for _ in range(1 + repeats):
        began = time.perf_counter()
        summary = score_predictions(pairs, examples, "program")
        seconds.append(time.perf_counter() - began)
    warm = statistics.median(seconds[1:]) if repeats else seconds[0]
    return {"workload": name, "n": summary["n"], "execution_accuracy": summary["execution_accuracy"],
            "program_accuracy": summary["program_accuracy"], "sympy_needed": "sympy" in sys.modules,
            "cold_seconds": round(seconds[0], 4),
            "warm_seconds_median": round(warm, 4), "cold_examples_per_s": round(summary["n"] / seconds[0]),
            "warm_examples_per_s": round(summary["n"] / warm)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workload is None:
        for workload in WORKLOADS:
            subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                            "--workload", workload], check=True)
        return 0
    lines = args.predictions.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    pairs = [(row["id"], row["prediction"]) for row in rows]
    own_gold = args.workload == "all_lines_own_gold"
    examples = examples_from_lines(rows) if own_gold else load_examples(args.gold)
    print(json.dumps(benchmark(args.workload, pairs, examples, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
