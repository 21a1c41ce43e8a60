"""Where the project's own files lie: the checkout, its embedded synthetic sample and official-split folder,
and the shared material beside the checkout (real FinQA examples, real tokenizers; ``FINQA_SHARED_DIR``
points elsewhere). One place for each, for the scripts and the tests."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "FinQA" / "sample"  # the committed synthetic FinQA sample (train/dev/test.json)
DATASET_DIR = REPO_ROOT / "FinQA" / "dataset"  # where scripts/download_finqa.py puts the official splits
SHARED_DIR = Path(os.environ.get("FINQA_SHARED_DIR", REPO_ROOT.parent / "shared"))
