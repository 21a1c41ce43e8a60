"""Time executing 1,147 generated Python programs: the sandbox vs one ``python`` subprocess per program.

    python scripts/benchmark_sandbox.py [--examples DIR] [--n 1147] [--workers 2] [--timeout_s 2]

The programs are program-of-thought Python written from FinQA gold programs (test.json, then dev.json, cycled
up to ``--n``; the real examples in ../shared/FinQA/real when present) by the gold-program teacher,
:func:`finqa_dsl.core.gold_transpiler.transpile` (named numbers, one line per step, then ``ans``); programs it
cannot state are passed over. Every 100th is swapped for a failing one
(ZeroDivisionError, syntax error, NameError, no ``ans``, a list ``ans``). Both paths run the same programs with
the same parallelism (``--workers``); the naive path starts ``python -c RUNNER`` per program, feeds the code on
stdin and reads the value back. One run each, after a warm-up of the sandbox's workers; prints one JSON line:
seconds, programs/s, ratio, CPU seconds (this process and its descendants; comparable on a busy machine where
wall time is not), how many programs got different values (a failure in both counts as the same), and how many
values match the gold ``exe_ans``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.gold_transpiler import TranspileError, transpile
from finqa_dsl.locations import SAMPLE_DIR, SHARED_DIR
from finqa_dsl.sandbox import Sandbox, SandboxResult

SHARED_REAL = SHARED_DIR / "FinQA" / "real"
DEFAULT_EXAMPLES = SHARED_REAL if SHARED_REAL.is_dir() else SAMPLE_DIR
NAIVE_TIMEOUT_S = 60.0
FAILING = ("ans = 1 / 0", "ans = (revenue -", "ans = revenue * 2", "revenue = 100", "ans = [1, 2]")
# The naive path: what a script would write to run one program in a fresh interpreter.
NAIVE_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
try:
    exec(compile(sys.stdin.read(), "<program>", "exec"), namespace)
    ans = namespace["ans"]
    value = ("yes" if ans else "no") if type(ans) is bool else ans.strip() if isinstance(ans, str) else float(ans)
except BaseException as error:
    value = None
print(json.dumps(value))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES,
                        help="folder with test.json and dev.json (default: the real examples in ../shared, "
                             "else the embedded sample); cycled if they hold fewer than --n")
    parser.add_argument("--n", type=int, default=1147, help="programs (the official test split's size)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout_s", type=float, default=2.0)
    return parser.parse_args(argv)


def programs(folder: Path, n: int) -> tuple[list[str], list[object]]:
    """``n`` programs and their gold ``exe_ans`` (None for the failing ones)."""
    solved = []
    for example in (example for name in ("test.json", "dev.json") for example in load_examples(folder / name)):
        try:
            solved.append((transpile(example), example.exe_ans))
        except TranspileError:
            continue  # no Python states its official value: passed over, as the gold-program teacher does
    codes, gold = [], []
    for index, (code, exe_ans) in enumerate(itertools.islice(itertools.cycle(solved), n)):
        failing = index % 100 == 99
        codes.append(FAILING[index // 100 % len(FAILING)] if failing else code)
        gold.append(None if failing else exe_ans)
    return codes, gold


def run_naive(code: str) -> float | str | None:
    """One fresh interpreter for one program (no program here loops, so the timeout only guards the benchmark:
    on a busy machine interpreter start-up alone can take seconds)."""
    try:
        done = subprocess.run([sys.executable, "-c", NAIVE_RUNNER], input=code, capture_output=True, text=True,
                              timeout=NAIVE_TIMEOUT_S)
        return json.loads(done.stdout)
    except (subprocess.TimeoutExpired, ValueError):
        return None


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped descendants (user + system)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def matches_gold(value: float | str | None, gold: object) -> bool:
    if isinstance(value, float) and isinstance(gold, int | float):
        return abs(value - gold) < 1e-3
    return isinstance(value, str) and str(gold).lower() == value.lower()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    codes, gold = programs(args.examples, args.n)
    with Sandbox(workers=args.workers, timeout_s=args.timeout_s) as sandbox:
        sandbox.run_many(["ans = 1"] * 2 * args.workers)  # warm-up: workers started, first forks done
        cpu_before, began = cpu_seconds(), time.perf_counter()
        results: list[SandboxResult] = sandbox.run_many(codes)
        ours = time.perf_counter() - began
    ours_cpu = cpu_seconds() - cpu_before  # the workers' and their children's counts arrive when they are reaped
    cpu_before, began = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(args.workers) as threads:
        naive_values = list(threads.map(run_naive, codes))
    naive, naive_cpu = time.perf_counter() - began, cpu_seconds() - cpu_before
    values = [result.value for result in results]
    summary = {"programs": len(codes), "workers": args.workers, "ours_seconds": round(ours, 3),
               "naive_seconds": round(naive, 3), "ours_programs_per_s": round(len(codes) / ours),
               "naive_programs_per_s": round(len(codes) / naive, 1), "ratio": round(naive / ours, 1),
               "ours_cpu_seconds": round(ours_cpu, 2), "naive_cpu_seconds": round(naive_cpu, 2),
               "values_differing": sum(mine != theirs for mine, theirs in zip(values, naive_values, strict=True)),
               "failed": sum(not result.ok for result in results),
               "match_gold_exe_ans": sum(map(matches_gold, values, gold))}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
