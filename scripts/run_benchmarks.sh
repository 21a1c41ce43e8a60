#!/usr/bin/env bash
# Run every benchmark of BENCHMARKS.md and keep their JSON results in __output__/benchmarks/.
# Run it on an otherwise idle machine: the numbers are throughputs and ratios taken in one run.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
"$python" scripts/prepare_default_model.py --no_check >&2
out=__output__/benchmarks
mkdir -p "$out"
"$python" scripts/benchmark_scoring.py | tee "$out/scoring.jsonl"
"$python" scripts/benchmark_prompts.py | tee "$out/prompts.json"
"$python" scripts/benchmark_inference.py | tee "$out/inference.json"
"$python" scripts/benchmark_decoding.py | tee "$out/decoding.json"
"$python" scripts/benchmark_training.py | tee "$out/training.json"
"$python" scripts/benchmark_sandbox.py | tee "$out/sandbox.json"
"$python" scripts/benchmark_target_loss.py | tee "$out/target_loss.json"
"$python" scripts/benchmark_crosscoder.py | tee "$out/crosscoder.json"
