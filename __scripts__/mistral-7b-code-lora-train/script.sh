#!/usr/bin/env bash
# The PoT-distillation study's student: Mistral-7B-Instruct-v0.3, LoRA r 512 / alpha 1024 / dropout 0.1
# on q/k/v/o, one epoch, lr 2.5e-5, 8-bit AdamW, completion-only loss on the teacher's code; then its test
# (vLLM, adapter unmerged).
# Run: bash __scripts__/mistral-7b-code-lora-train/script.sh [extra flags]   Outputs: __output__/mistral-7b-code-lora/
exec bash "$(dirname "$0")/../code_run.sh" --output_folder mistral-7b-code-lora \
  --peft lora --lora_r 512 --lora_alpha 1024 --lora_dropout 0.1 --lora_target_modules q_proj,k_proj,v_proj,o_proj \
  --do_train --do_eval --do_test --eval_type fine-tuned \
  --num_train_epochs 1 --learning_rate 2.5e-5 --optim adamw_bnb_8bit \
  --per_device_train_batch_size 1 --gradient_accumulation_steps 1 --gradient_checkpointing true \
  --logging_steps 10 --eval_strategy steps --eval_steps 500 --save_strategy steps --save_steps 500 \
  --save_total_limit 1 \
  "$@"
