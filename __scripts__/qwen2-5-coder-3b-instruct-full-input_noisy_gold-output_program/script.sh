#!/usr/bin/env bash
# Qwen2.5-Coder-3B-Instruct, full fine-tune: gold evidence plus 3 text and 1 table distractors -> FinQA DSL program.
# Run: bash __scripts__/qwen2-5-coder-3b-instruct-full-input_noisy_gold-output_program/script.sh [extra flags]   Outputs: __output__/qwen2-5-coder-3b-instruct-full-input_noisy_gold-output_program/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder qwen2-5-coder-3b-instruct-full-input_noisy_gold-output_program \
  --model_name Qwen/Qwen2.5-Coder-3B-Instruct --peft none --bf16 true --optim paged_adamw_8bit \
  --input_mode noisy_gold --target_field program \
  --noisy_text_distractors 3 --noisy_table_distractors 1 --noisy_context_seed 0 \
  "$@"
