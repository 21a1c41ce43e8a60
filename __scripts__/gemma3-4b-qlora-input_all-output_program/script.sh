#!/usr/bin/env bash
# Gemma-3-4B-IT, QLoRA (4-bit NF4, double quant) with paged 8-bit AdamW: full context (pre_text, table, post_text) -> FinQA DSL program.
# Run: bash __scripts__/gemma3-4b-qlora-input_all-output_program/script.sh [extra flags]   Outputs: __output__/gemma3-4b-qlora-input_all-output_program/
exec bash "$(dirname "$0")/../finetune_run.sh" --output_folder gemma3-4b-qlora-input_all-output_program \
  --model_name google/gemma-3-4b-it --peft qlora --attn_implementation eager --bf16 true \
  --bnb_4bit_quant_type nf4 --bnb_4bit_compute_dtype bfloat16 --bnb_4bit_use_double_quant true \
  --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 --learning_rate 2e-4 --optim paged_adamw_8bit \
  --input_mode all --target_field program \
  "$@"
