#!/usr/bin/env bash
# The PoT-distillation study's few-shot evaluation of Mistral-7B-Instruct-v0.3 on the filtered dev split (vLLM, greedy).
# Run: bash __scripts__/mistral-7b-code-dev-few-shot/script.sh [extra flags]   Outputs: __output__/mistral-7b-code-dev-few-shot/
exec bash "$(dirname "$0")/../code_run.sh" --output_folder mistral-7b-code-dev-few-shot --do_test \
  --test_file data/teacher/dev.filtered.csv --eval_type few-shot --few_shot_k 4 \
  "$@"
