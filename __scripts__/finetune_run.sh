#!/usr/bin/env bash
# The settings the FinQA fine-tuning driver's runs share (official FinQA splits, one epoch, cosine schedule,
# eval/save every 200 steps, best checkpoint kept). Each __scripts__/<run>/script.sh adds its model, mode and
# target; any flag given after those overrides these (the last occurrence wins). Outputs: __output__/<run>/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
exec "$python" scripts/finetune.py \
  --do_train --do_eval --do_test \
  --train_file FinQA/dataset/train.json \
  --eval_file FinQA/dataset/dev.json \
  --test_file FinQA/dataset/test.json \
  --num_train_epochs 1 \
  --per_device_train_batch_size 4 \
  --per_device_eval_batch_size 8 \
  --gradient_accumulation_steps 4 \
  --learning_rate 2e-5 \
  --lr_scheduler_type cosine \
  --warmup_steps 0.03 \
  --weight_decay 0.01 \
  --logging_steps 10 \
  --eval_strategy steps --eval_steps 200 \
  --save_strategy steps --save_steps 200 --save_total_limit 1 \
  --load_best_model_at_end true \
  --gradient_checkpointing true \
  --max_seq_length 1024 \
  --generation_max_new_tokens 128 \
  --inference_batch_size 32 \
  --seed 42 \
  "$@"
