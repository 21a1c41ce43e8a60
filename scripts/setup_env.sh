#!/usr/bin/env bash
# Create (once) the project's virtual environment and print the path of its python.
#
# The environment lives outside the clone, keyed by the hash of requirements.txt and the dev extra, so a
# fresh clone on the same machine reuses it. Override its location with FINQA_DSL_CACHE.
# On a machine without an NVIDIA GPU, torch 2.13.0 is installed first: pip takes the CPU build when one
# is on the machine's find-links (as on this project's CI machines) instead of a multi-GB CUDA build.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FINQA_DSL_CACHE:-$HOME/.cache/finqa_dsl}
key=$( (cat "$repo/requirements.txt"; grep -A2 optional-dependencies "$repo/pyproject.toml") | sha256sum | cut -c1-12)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "Setting up $venv (first time only, a few minutes)..." >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet "torch==2.13.0" >&2
  fi
  "$venv/bin/pip" install --quiet --no-build-isolation -e "$repo[dev]" >&2
  touch "$venv/.complete"
fi
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$repo" >&2
echo "$venv/bin/python"
