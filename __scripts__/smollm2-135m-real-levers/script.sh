#!/usr/bin/env bash
# The real-data table of BENCHMARKS.md ("More right answers from the same model"): SmolLM2-135M-Instruct on the
# real FinQA examples of ../shared/FinQA/real, gold evidence, program target, on a CPU.
# Zero-shot and few-shot (k=4) with and without --constrained_decoding; LoRA for 3 epochs (a checkpoint per epoch;
# epochs chosen on dev), then greedy, constrained, and constrained + self-consistency (N=8) on the test set; a full
# fine-tune, chosen on dev against the LoRA; the full fine-tune's recipe search on dev (learning rate, how tables
# read, epochs), what more data and synthetic examples add (on dev), and the chosen recipes fitted on train + dev,
# each reported once on test.
# Every command prints its wall time. Outputs: __output__/real-*/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
"$python" scripts/prepare_default_model.py
splits=__output__/real-splits
"$python" -m scripts.real_splits --synthetic_ratio 0.5  # ../shared/FinQA/real -> $splits
common=(--input_mode gold --target_field program --max_seq_length 512 --generation_max_new_tokens 48 --seed 42)
short=(--task_instruction "Write the FinQA program that answers the question, e.g. subtract(5829, 5735), divide(#0, 5735)")
timed() { local began=$SECONDS; "$python" scripts/finetune.py "$@" | tail -n 1; echo "  $((SECONDS - began)) s"; }

# 1. the base model, the built-in instruction (it describes the DSL): zero-shot and 4 real train exemplars
for shots in 0 4; do
  for constrained in false true; do  # 4 real exemplars make prompts of up to 1,300 tokens: room for 2,048
    timed "${common[@]}" --max_seq_length 2048 --train_file "$splits/train.json" --test_file "$splits/test_gold.json" --do_test \
      --few_shot_k "$shots" --constrained_decoding "$constrained" --output_folder "real-base-k${shots}-c${constrained}"
  done
done
# 2. LoRA, 3 epochs, a checkpoint per epoch (the 1-epoch row is the first checkpoint of this cosine schedule)
timed "${common[@]}" "${short[@]}" --train_file "$splits/train.json" --do_train --peft lora --lora_r 16 \
  --lora_alpha 32 --lora_dropout 0.05 --num_train_epochs 3 --learning_rate 2e-3 --lr_scheduler_type cosine \
  --warmup_steps 0.1 --per_device_train_batch_size 4 --logging_steps 10 --save_strategy epoch \
  --output_folder real-lora-3ep
checkpoints=__output__/real-lora-3ep/checkpoints
# 3. the epochs chosen on dev (greedy execution accuracy)
for step in 65 195; do
  timed "${common[@]}" "${short[@]}" --model_name "$checkpoints/checkpoint-$step" --test_file "$splits/dev.json" \
    --do_test --output_folder "real-lora-dev-step$step"
done
# 4. the test set, reported once: greedy, constrained, constrained + self-consistency
for step in 65 195; do
  test=(--model_name "$checkpoints/checkpoint-$step" --test_file "$splits/test_gold.json" --do_test)
  timed "${common[@]}" "${short[@]}" "${test[@]}" --output_folder "real-lora-step$step-greedy"
  timed "${common[@]}" "${short[@]}" "${test[@]}" --constrained_decoding --output_folder "real-lora-step$step-c"
  timed "${common[@]}" "${short[@]}" "${test[@]}" --constrained_decoding --num_samples 8 \
    --generation_temperature 0.7 --output_folder "real-lora-step$step-c-sc8"
done
# 5. a full fine-tune instead of LoRA (3 epochs, learning rate 1e-4), chosen on dev against the LoRA, then the test
timed "${common[@]}" "${short[@]}" --train_file "$splits/train.json" --test_file "$splits/dev.json" --do_train \
  --do_test --peft none --num_train_epochs 3 --learning_rate 1e-4 --lr_scheduler_type cosine --warmup_steps 0.1 \
  --per_device_train_batch_size 4 --logging_steps 10 --save_strategy no --output_folder real-full-3ep-dev
full=(--model_name __output__/real-full-3ep-dev/final_model --test_file "$splits/test_gold.json" --do_test)
timed "${common[@]}" "${short[@]}" "${full[@]}" --output_folder real-full-3ep-greedy
timed "${common[@]}" "${short[@]}" "${full[@]}" --constrained_decoding --output_folder real-full-3ep-c
# 6. the recipe search of the full fine-tune on dev: learning rate, then FinQA's row sentences for the tables
full_dev=("${common[@]}" "${short[@]}" --train_file "$splits/train.json" --test_file "$splits/dev.json" --do_train
  --do_test --peft none --num_train_epochs 3 --lr_scheduler_type cosine --warmup_steps 0.1
  --per_device_train_batch_size 4 --logging_steps 10 --save_strategy no --max_seq_length 1024)
timed "${full_dev[@]}" --learning_rate 5e-5 --output_folder real-full-lr5e-5-dev
for lr in 1e-4 2e-4; do
  timed "${full_dev[@]}" --learning_rate "$lr" --table_format sentences --output_folder "real-full-sent-lr$lr-dev"
done
# the epochs: the sentences recipe at 2e-4 for 6 epochs, a checkpoint per epoch (65 steps), scored on dev after 3,
# 4, 5 (the checkpoints of this one cosine schedule) and 6 epochs (the final model)
timed "${full_dev[@]}" --learning_rate 2e-4 --table_format sentences --num_train_epochs 6 --save_strategy epoch \
  --save_only_model true --output_folder real-full-sent-lr2e-4-6ep-dev
for step in 195 260 325; do
  timed "${common[@]}" "${short[@]}" --model_name "__output__/real-full-sent-lr2e-4-6ep-dev/checkpoints/checkpoint-$step" \
    --table_format sentences --max_seq_length 1024 --test_file "$splits/dev.json" --do_test \
    --output_folder "real-full-sent-lr2e-4-6ep-dev-step$step"
done
# the chosen model on dev under the grammar, then with self-consistency at a lower temperature (N=8, 0.3)
chosen=(--model_name __output__/real-full-sent-lr2e-4-dev/final_model --test_file "$splits/dev.json" --do_test
  --table_format sentences --constrained_decoding --max_seq_length 1024)
timed "${common[@]}" "${short[@]}" "${chosen[@]}" --output_folder real-full-sent-lr2e-4-dev-c
timed "${common[@]}" "${short[@]}" "${chosen[@]}" --num_samples 8 --generation_temperature 0.3 \
  --output_folder real-full-sent-lr2e-4-dev-c-sc8
# 7. how much more data adds, on dev alone: train + the first half of dev, scored on the second half (against the
#    train-only model's rows of that half)
"$python" - "$splits" <<'PY'
import json, sys
from pathlib import Path
from finqa_dsl.sample.generator import generate_examples
from scripts.real_splits import SYNTHETIC_SEED
splits = Path(sys.argv[1])
train, dev = (json.loads((splits / name).read_text()) for name in ("train.json", "dev.json"))
(splits / "train_dev_first_half.json").write_text(json.dumps(train + dev[:228]))
(splits / "dev_second_half.json").write_text(json.dumps(dev[228:]))
# half as many synthetic examples again (the measured run took the first 244 of a draw of 1000)
synthetic = generate_examples(1000, seed=SYNTHETIC_SEED)[:244]
(splits / "train_dev_first_half_synthetic.json").write_text(json.dumps(train + dev[:228] + synthetic))
PY
for half in train_dev_first_half train_dev_first_half_synthetic; do
  timed "${full_dev[@]}" --learning_rate 1e-4 --table_format sentences --train_file "$splits/$half.json" \
    --test_file "$splits/dev_second_half.json" --output_folder "real-full-sent-${half//_/-}-dev"
done
# 8. the recipe dev chose, fitted on train + dev (717), then the test set once: greedy and constrained; 9. the same
#    with the synthetic examples (358 more)
for recipe_split in real-recipe:train_dev real-recipe-synthetic:train_dev_synthetic; do
  recipe=${recipe_split%%:*}
  timed "${full_dev[@]}" --learning_rate 2e-4 --table_format sentences --train_file "$splits/${recipe_split#*:}.json" \
    --test_file "$splits/test_gold.json" --output_folder "$recipe-greedy"
  timed "${common[@]}" "${short[@]}" --model_name "__output__/$recipe-greedy/final_model" --max_seq_length 1024 \
    --table_format sentences --test_file "$splits/test_gold.json" --do_test --constrained_decoding \
    --output_folder "$recipe-c"
done
"$python" scripts/compare_runs.py __output__/real-base-* __output__/real-lora-step* __output__/real-full-3ep-* \
  __output__/real-recipe-*
