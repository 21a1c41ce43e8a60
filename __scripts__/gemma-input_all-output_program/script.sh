#!/usr/bin/env bash
# Gemma-3-1B-IT, full fine-tune: full context (pre_text, table, post_text) -> FinQA DSL program.
# Run: bash __scripts__/gemma-input_all-output_program/script.sh [extra flags]   Outputs: __output__/gemma-input_all-output_program/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder gemma-input_all-output_program \
  --model_name google/gemma-3-1b-it --peft none --attn_implementation eager --bf16 true \
  --input_mode all --target_field program \
  "$@"
