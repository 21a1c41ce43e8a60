"""scripts/merge_lora.py: a merged folder loads without peft and computes what the adapter did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from conftest import REPO_ROOT
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from finqa_dsl.models.merge import MERGE_REPORT
from scripts import merge_lora


def test_merged_folder_matches_the_adapter(tiny_lora_adapter, tmp_path):
    adapter_dir = tiny_lora_adapter
    out = tmp_path / "merged"
    assert merge_lora.main([str(adapter_dir), "--output_dir", str(out)]) == 0
    report = json.loads((out / MERGE_REPORT).read_text())
    assert report["max_abs_logit_diff"] <= report["tolerance"] == 1e-3
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(adapter_dir.parent / "base")
    adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids = AutoTokenizer.from_pretrained(out)("net revenue 5735 5829", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected, got = adapter(input_ids=ids).logits, merged(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(adapter_dir.parent / "base")(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - plain).abs().max() > 1e-3  # the adapter changed the function, and the merge kept that


def test_refuses_a_folder_without_an_adapter_and_an_occupied_output(tiny_lora_adapter, tmp_path, capsys):
    adapter_dir = tiny_lora_adapter
    assert merge_lora.main([str(adapter_dir.parent / "base"), "--output_dir", str(tmp_path / "m")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert merge_lora.main([str(adapter_dir), "--output_dir", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_push_to_hub_offline_is_one_clear_line_before_any_work(tiny_lora_adapter, tmp_path):
    adapter_dir = tiny_lora_adapter
    out = tmp_path / "merged"
    result = subprocess.run(
        [sys.executable, "scripts/merge_lora.py", str(adapter_dir), "--output_dir", str(out),
         "--push_to_hub", "someone/finqa-merged"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": ""},
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--push_to_hub needs a Hugging Face login" in errors[0]
    assert not out.exists()
