#!/usr/bin/env bash
# Gemma-3-1B-IT, full fine-tune: gold evidence (gold_inds) -> FinQA DSL program.
# Run: bash __scripts__/gemma-input_gold-output_program/script.sh [extra flags]   Outputs: __output__/gemma-input_gold-output_program/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder gemma-input_gold-output_program \
  --model_name google/gemma-3-1b-it --peft none --attn_implementation eager --bf16 true \
  --input_mode gold --target_field program \
  "$@"
