#!/usr/bin/env bash
# Qwen2.5-Coder-3B-Instruct, full fine-tune: full context (pre_text, table, post_text) -> executed numeric answer.
# Run: bash __scripts__/qwen2-5-coder-3b-instruct-full-input_all-output_numerical/script.sh [extra flags]   Outputs: __output__/qwen2-5-coder-3b-instruct-full-input_all-output_numerical/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder qwen2-5-coder-3b-instruct-full-input_all-output_numerical \
  --model_name Qwen/Qwen2.5-Coder-3B-Instruct --peft none --bf16 true --optim paged_adamw_8bit \
  --input_mode all --target_field numerical \
  "$@"
