#!/usr/bin/env bash
# Set up the environment (first time only) and run the linter and the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k dsl`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=$(bash scripts/setup_env.sh)
"$python" -m ruff check .
"$python" -m pytest -q "$@"
