"""scripts/merge_lora.py: a merged folder loads without peft and computes what the adapter did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path
from finqa_dsl.models.merge import MERGE_REPORT
from scripts import merge_lora

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A random LoRA adapter (non-zero B, so it changes the function) on a tiny Llama with a real tokenizer."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model tokenizer unavailable: {error}")
    root = tmp_path_factory.mktemp("merge")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(root / "adapter")
    return root / "adapter"


def test_merged_folder_matches_the_adapter(adapter_dir, tmp_path):
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


def test_refuses_a_folder_without_an_adapter_and_an_occupied_output(adapter_dir, tmp_path, capsys):
    assert merge_lora.main([str(adapter_dir.parent / "base"), "--output_dir", str(tmp_path / "m")]) == 2
    assert "no adapter_config.json" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert merge_lora.main([str(adapter_dir), "--output_dir", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_push_to_hub_offline_is_one_clear_line_before_any_work(adapter_dir, tmp_path):
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
