#!/usr/bin/env bash
# The offline CPU crosscoder run (README "Model diffing with a crosscoder"): the default model
# (SmolLM2-135M-Instruct) vs the LoRA of the main job (__output__/smollm2-135m-lora-sample/final_model; when it
# is absent this script first runs the main job, __scripts__/smollm2-135m-lora-sample/script.sh, about 8 minutes
# on 2 idle cores; LORA=path/to/adapter points at another one), MLP output of layer 15 of 30, prompt + gold
# program of the sample train split, a 1,024-latent BatchTopK crosscoder (k=32, 2,000 steps of 256 tokens), the analysis plots and the
# dashboard. Run: bash __scripts__/crosscoder-smollm2-sample/script.sh   (flags after it go to the training)
# Outputs: __output__/crosscoder-smollm2-sample/{activations,crosscoder,analysis}/ (analysis/dashboard.html)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
lora=${LORA:-__output__/smollm2-135m-lora-sample/final_model}
if [ ! -f "$lora/adapter_config.json" ]; then
  echo "no LoRA at $lora: running the main job first (bash __scripts__/smollm2-135m-lora-sample/script.sh)" >&2
  bash __scripts__/smollm2-135m-lora-sample/script.sh
fi
out=__output__/crosscoder-smollm2-sample
if [ ! -f "$out/activations/manifest.json" ]; then
  "$python" scripts/collect_activations.py --ft_model "$lora" --data_file FinQA/sample/train.json \
    --num_examples "${NUM_EXAMPLES:-160}" --input_mode gold --target_field program --layer 15 --site mlp \
    --batch_size 8 --dtype float32 --output_dir "$out/activations"
fi
"$python" scripts/train_crosscoder.py "$out/activations" --output_dir "$out/crosscoder" \
  --dict_size 1024 --k 32 --lr 1e-3 --batch_size 256 --steps 2000 --warmup_steps 100 \
  --threshold_start_step 500 --dead_tokens 100000 --log_every 250 --checkpoint_every 1000 --resume "$@"
"$python" scripts/analyze_crosscoder.py "$out/crosscoder" "$out/activations" --output_dir "$out/analysis" \
  --dashboard_latents 5
