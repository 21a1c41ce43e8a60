#!/usr/bin/env bash
# The settings the PoT-distillation study's Python-target runs share: Mistral-7B-Instruct-v0.3, the full
# passage, the teacher's filtered code (data/teacher/<split>.filtered.csv from the pipeline in README
# "Python-program targets"), greedy decoding of up to 1,000 tokens, vLLM for test inference. Each __scripts__/mistral-7b-code-*/
# script.sh adds what it runs; any flag given after those overrides these. Outputs: __output__/<run>/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
exec "$python" scripts/finetune.py \
  --model_name mistralai/Mistral-7B-Instruct-v0.3 \
  --target_field code --input_mode all \
  --train_file data/teacher/train.filtered.csv \
  --eval_file data/teacher/dev.filtered.csv \
  --test_file data/teacher/test.filtered.csv \
  --max_seq_length 4096 \
  --generation_max_new_tokens 1000 \
  --inference_backend vllm \
  --bf16 true --torch_dtype bfloat16 \
  --seed 42 \
  "$@"
