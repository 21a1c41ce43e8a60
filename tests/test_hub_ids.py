"""Hub ids wherever a model or adapter is accepted, as the study downloads its adapter by id: a repository in the
Hugging Face cache (laid out as huggingface_hub lays it out) is used offline; one that is not there is one clear
line and exit 2; the driver's --push_to_hub is refused before any work when it cannot upload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SAMPLE

from finqa_dsl.core.data import load_examples

ADAPTER_ID = "someone/tiny-finqa-adapter"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache: Path, repo_id: str, files: Path) -> Path:
    """``files`` as the main revision of ``repo_id`` in a Hugging Face cache at ``cache``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(files, snapshot)
    return snapshot


def _run(script: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_TOKEN": ""}
    return subprocess.run([sys.executable, f"scripts/{script}.py", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env=environment)


@pytest.mark.slow
def test_an_adapter_by_hub_id_is_read_from_the_cache_offline(tiny_lora_adapter, tmp_path):
    cache = tmp_path / "hub"
    _cache_repo(cache, ADAPTER_ID, tiny_lora_adapter)
    example = load_examples(SAMPLE / "test.json")[0]
    side = _run("inference", ADAPTER_ID, "--test_file", str(SAMPLE / "test.json"), "--id", example.id,
                "--max_new_tokens", "4", cache=cache)
    assert side.returncode == 0, side.stderr
    result = json.loads(side.stdout)
    assert result["base_model"] == str(tiny_lora_adapter.parent / "base")  # read from the cached adapter_config
    assert result["finetuned_model"].endswith(COMMIT) and result["gold_exe_ans"] == example.exe_ans
    local = _run("inference", str(tiny_lora_adapter), "--test_file", str(SAMPLE / "test.json"), "--id", example.id,
                 "--max_new_tokens", "4", cache=cache)
    assert json.loads(local.stdout)["finetuned"]["generation"] == result["finetuned"]["generation"]
    merged = _run("merge_lora", ADAPTER_ID, "--output_dir", str(tmp_path / "merged"), cache=cache)
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged" / "config.json").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


def test_an_id_that_is_not_there_offline_is_one_line_and_exit_2(tmp_path):
    side = _run("inference", "someone/not-cached", "--question", "What is 1 + 1?", cache=tmp_path)
    assert side.returncode == 2
    errors = [line for line in side.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "someone/not-cached" in errors[0] and "Hugging Face cache" in errors[0], side.stderr
    assert "Traceback" not in side.stderr


def test_the_drivers_push_to_hub_is_refused_before_any_work_when_it_cannot_upload(tiny_model_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "finetune.py"), "--model_name", str(tiny_model_dir),
         "--train_file", str(SAMPLE / "train.json"), "--max_train_samples", "2", "--do_train", "--push_to_hub",
         "--hub_model_id", "someone/finqa-run", "--report_to", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--push_to_hub needs a Hugging Face login" in errors[0], result.stderr
    assert not (tmp_path / "__output__").exists()
