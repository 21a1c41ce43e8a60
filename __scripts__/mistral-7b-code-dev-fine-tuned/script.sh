#!/usr/bin/env bash
# The PoT-distillation study's fine-tuned evaluation of Mistral-7B-Instruct-v0.3
# on the filtered dev split (vLLM, greedy).
# Needs the adapter of __scripts__/mistral-7b-code-lora-train/.
# Run: bash __scripts__/mistral-7b-code-dev-fine-tuned/script.sh [extra flags]   Outputs: __output__/mistral-7b-code-dev-fine-tuned/
exec bash "$(dirname "$0")/../code_run.sh" --output_folder mistral-7b-code-dev-fine-tuned --do_test \
  --test_file data/teacher/dev.filtered.csv --eval_type fine-tuned --model_name __output__/mistral-7b-code-lora/final_model \
  "$@"
