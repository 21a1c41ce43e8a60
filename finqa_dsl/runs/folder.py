"""Choosing a run folder: a finished run is never overwritten, an interrupted one resumes in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finqa_dsl.core.errors import UsageError
from finqa_dsl.runs import files as run_files

# Arguments that may change between an interrupted run and its resumption in the same folder.
# output_dir, run_name and the Hub repository (by default) follow from the folder itself.
_RESUME_NEUTRAL_ARGS = {"resume_from_checkpoint", "wandb_mode", "wandb_run_name", "logging_dir",
                        "resolved_output_dir", "output_dir", "run_name", "resolved_hub_repo"}


def resolve_run_folder(root: Path, name: str, args: dict[str, Any], defaults: dict[str, Any] | None = None) -> Path:
    """Pick the folder of this run under ``root``.

    A finished run (it wrote ``timing.json``) is never overwritten: the new run gets ``name--2``, ``--3``...
    An unfinished folder whose ``args.json`` matches ``args`` is reused, so an interrupted run resumes there;
    so is a folder holding nothing but ``args.json`` (a run that failed before any result), whatever its args.
    A flag that an older ``args.json`` lacks (it did not exist then) matches when ``args`` gives it its value in
    ``defaults``.
    """
    candidate, suffix = root / name, 1
    while candidate.exists():
        if not _holds_results(candidate) or (
            not (candidate / run_files.TIMING).exists() and _same_args(candidate / run_files.ARGS, args, defaults or {})
        ):
            return candidate
        suffix += 1
        candidate = root / f"{name}--{suffix}"
    return candidate


def _holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds any file but ``args.json`` (empty folders do not count)."""
    return any(path.is_file() and path != folder / run_files.ARGS for path in folder.rglob("*"))


def _same_args(path: Path, args: dict[str, Any], defaults: dict[str, Any]) -> bool:
    if not path.exists():
        return False
    saved = {**defaults, **json.loads(path.read_text(encoding="utf-8"))}

    def relevant(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in _RESUME_NEUTRAL_ARGS}

    return relevant(saved) == relevant(json.loads(json.dumps(args, default=str)))


def run_test_file(folder: Path) -> Path:
    """The ``test_file`` of a run folder's ``args.json``; a relative path is taken from the current folder, else
    from the folder the run started in (the one above ``__output__``). :class:`UsageError` when there is none."""
    args_path = folder / run_files.ARGS
    try:
        test_file = json.loads(args_path.read_text(encoding="utf-8"))["test_file"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{folder}: no {run_files.ARGS} with a test_file: not a run folder of the driver") from None
    if not isinstance(test_file, str) or not test_file:
        raise UsageError(f"{args_path}: test_file is not set: the run made no test predictions")
    candidates = [Path(test_file)] if Path(test_file).is_absolute() else \
        [Path(test_file), folder.resolve().parent.parent / test_file]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"{args_path}: test_file {test_file} is not found from here or from the run's folder")
