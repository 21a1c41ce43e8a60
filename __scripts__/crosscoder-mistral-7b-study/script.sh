#!/usr/bin/env bash
# The PoT-distillation and crosscoder study's crosscoder, for a GPU: Mistral-7B-Instruct-v0.3 vs the same model
# with the study's LoRA (hub adapter below; a folder merged with scripts/merge_lora.py works too:
# FT_MODEL=merged/ bash ...), MLP output of the study's "layer 17" (decoder layer index 16), prompt + gold
# program of 1,024 FinQA test examples, BatchTopK crosscoder with 2^14 latents, k=100, lr 5e-5 (other settings:
# Minder et al.'s, our defaults), analysis with plots and the dashboard.
# Run: bash __scripts__/crosscoder-mistral-7b-study/script.sh
# Outputs: __output__/crosscoder-mistral-7b-study/{activations,crosscoder,analysis}/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
base=${BASE_MODEL:-mistralai/Mistral-7B-Instruct-v0.3}
ft=${FT_MODEL:-liuhaozhe6788/mistralai_Mistral-7B-Instruct-v0.3-peftq_proj_k_proj_v_proj_o_proj-bs1-ne1}
out=__output__/crosscoder-mistral-7b-study
if [ ! -f "$out/activations/manifest.json" ]; then
  "$python" scripts/collect_activations.py --base_model "$base" --ft_model "$ft" \
    --data_file FinQA/dataset/test.json --num_examples 1024 --input_mode gold --target_field program \
    --layer 16 --site mlp --positions all --max_length 2048 --batch_size 8 --dtype bfloat16 \
    --output_dir "$out/activations"
fi
"$python" scripts/train_crosscoder.py "$out/activations" --output_dir "$out/crosscoder" \
  --dict_size 16384 --k 100 --lr 5e-5 --batch_size 2048 --tokens 50000000 --resume "$@"
"$python" scripts/analyze_crosscoder.py "$out/crosscoder" "$out/activations" --output_dir "$out/analysis" \
  --dashboard_latents 5
