#!/usr/bin/env bash
# The PoT-distillation study's pipeline, offline, on this CPU machine: the default model
# (SmolLM2-135M-Instruct) on the embedded synthetic sample, Python-program targets.
# 1. the gold-program teacher writes Python for the train split (correct by construction, run in the sandbox),
# 2. rows whose code does not reproduce the label are filtered out,
# 3. zero-shot and few-shot (4 solved shots) tests of the base model, then a LoRA fine-tune on the filtered code
#    and its test, 4. the three side by side. Outputs: __output__/smollm2-135m-code-*/ and __output__/code-teacher/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
"$python" scripts/prepare_default_model.py
teacher=__output__/code-teacher
"$python" scripts/generate_teacher_code.py FinQA/sample/train.json --output_file "$teacher/train.csv" \
  --teacher gold-program >/dev/null
"$python" scripts/filter_valid_answers.py "$teacher/train.csv" --output_file "$teacher/train.filtered.csv"
# A short instruction keeps prompts short (a CPU trains at roughly 100 tokens/s on this model); 2,048 tokens
# leave room for the four solved shots of the few-shot prompts.
data=(--train_file "$teacher/train.filtered.csv" --test_file FinQA/sample/test.json
      --input_mode gold --target_field code --max_seq_length 2048
      --task_instruction "Write Python that computes the answer into the variable ans, in a \`\`\`python block."
      --generation_max_new_tokens 160 --inference_batch_size 16 --seed 42)
zero_shot=$("$python" scripts/finetune.py "${data[@]}" --do_test --eval_type zero-shot \
  --output_folder smollm2-135m-code-zero-shot | tail -n 1)
few_shot=$("$python" scripts/finetune.py "${data[@]}" --do_test --eval_type few-shot --few_shot_k 4 \
  --output_folder smollm2-135m-code-few-shot | tail -n 1)
fine_tuned=$("$python" scripts/finetune.py "${data[@]}" --do_train --do_test --eval_type fine-tuned \
  --peft lora --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 \
  --max_train_samples 160 --num_train_epochs 1 \
  --learning_rate 2e-3 --lr_scheduler_type cosine --warmup_steps 0.1 \
  --per_device_train_batch_size 4 --logging_steps 5 --save_strategy epoch --save_total_limit 1 \
  --output_folder smollm2-135m-code-lora "$@" | tail -n 1)
"$python" scripts/compare_runs.py "$zero_shot" "$few_shot" "$fine_tuned"
