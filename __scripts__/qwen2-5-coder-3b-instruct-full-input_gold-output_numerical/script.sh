#!/usr/bin/env bash
# Qwen2.5-Coder-3B-Instruct, full fine-tune: gold evidence (gold_inds) -> executed numeric answer.
# Run: bash __scripts__/qwen2-5-coder-3b-instruct-full-input_gold-output_numerical/script.sh [extra flags]   Outputs: __output__/qwen2-5-coder-3b-instruct-full-input_gold-output_numerical/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder qwen2-5-coder-3b-instruct-full-input_gold-output_numerical \
  --model_name Qwen/Qwen2.5-Coder-3B-Instruct --peft none --bf16 true --optim paged_adamw_8bit \
  --input_mode gold --target_field numerical \
  "$@"
