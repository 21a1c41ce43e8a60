"""Shared fixtures: where ../shared lives, and skips with a reason when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("FINQA_SHARED_DIR", REPO_ROOT.parent / "shared"))
# Subprocesses (scripts, torchrun workers) import this checkout's package, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests read the read-only ../shared material in place "
                    "(set FINQA_SHARED_DIR to point elsewhere)")
    return path


@pytest.fixture(scope="session")
def real_finqa_dir() -> Path:
    """``../shared/FinQA/real``: 1,487 real FinQA examples."""
    return _require(SHARED_DIR / "FinQA" / "real")


@pytest.fixture(scope="session")
def peer_predictions_dir() -> Path:
    """``../shared/FinQA/peer_predictions``: a peer implementation's test predictions."""
    return _require(SHARED_DIR / "FinQA" / "peer_predictions")


@pytest.fixture(scope="session")
def shared_models_dir() -> Path:
    """``../shared/models``: real tokenizers and configs of the seed models (no weights)."""
    return _require(SHARED_DIR / "models")
