#!/usr/bin/env bash
# The PoT-distillation study's zero-shot evaluation of Mistral-7B-Instruct-v0.3
# on the filtered dev split (vLLM, greedy).
# Run: bash __scripts__/mistral-7b-code-dev-zero-shot/script.sh [extra flags]   Outputs: __output__/mistral-7b-code-dev-zero-shot/
exec bash "$(dirname "$0")/../code_run.sh" --output_folder mistral-7b-code-dev-zero-shot --do_test \
  --test_file data/teacher/dev.filtered.csv --eval_type zero-shot \
  "$@"
