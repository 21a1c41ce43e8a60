"""scripts/inference.py: base and fine-tuned answers side by side, each the one its own model generates."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SAMPLE
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.python_code import extract_code
from finqa_dsl.core.targets import get_target
from finqa_dsl.inference.engines.static import generate
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.inference.side_by_side import prompt_for_example
from scripts import finetune, inference

SAMPLE_TEST = SAMPLE / "test.json"


def _greedy(model, tokenizer, prompt) -> str:
    (_, generation), = generate(model.eval(), tokenizer, [prompt], GenerationSettings(max_new_tokens=6, batch_size=1))
    return generation.text


def test_an_example_by_id_gets_each_models_own_answer_and_the_gold(tiny_lora_adapter, capsys):
    example = load_examples(SAMPLE_TEST)[3]
    assert inference.main([str(tiny_lora_adapter), "--test_file", str(SAMPLE_TEST), "--id", example.id,
                           "--max_new_tokens", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lora_adapter.parent / "base")
    prompt = prompt_for_example(example, tokenizer, "program", ContextConfig(input_mode="gold"))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_lora_adapter.parent / "base")
    assert result["base"]["generation"] == _greedy(base, tokenizer, prompt)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lora_adapter.parent / "base"),
                                      tiny_lora_adapter)
    assert result["finetuned"]["generation"] == _greedy(tuned, tokenizer, prompt)
    assert result["gold_program"] == example.program and result["gold_exe_ans"] == example.exe_ans
    assert {"execution_correct", "program_correct", "failure_reason"} <= result["finetuned"].keys()
    assert result["base_model"] == str(tiny_lora_adapter.parent / "base")


def test_a_question_of_ones_own_against_a_named_base(tiny_lora_adapter, capsys):
    base = str(tiny_lora_adapter.parent / "base")
    assert inference.main([str(tiny_lora_adapter), "--base_model", base, "--question", "What is 5829 - 5735?",
                           "--context", "| revenue | 5735 | 5829 |", "--max_new_tokens", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["id"] == "question" and "gold_program" not in result
    assert {"generation", "executed_value", "execution_error"} <= result["base"].keys()


def test_wrong_selection_is_one_line_and_exit_2(tiny_lora_adapter, capsys):
    assert inference.main([str(tiny_lora_adapter)]) == 2
    assert "either --test_file with --id, or --question" in capsys.readouterr().err
    assert inference.main([str(tiny_lora_adapter), "--test_file", str(SAMPLE_TEST), "--id", "nope"]) == 2
    assert "no example with id 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_code_target_side_by_side_runs_both_answers_in_the_sandbox(in_tmp, tiny_model_dir, capsys):
    """The study's use: its code model against the base. A tiny model fine-tuned until it writes one example's
    code: that code runs in the sandbox and scores right; the untrained base's scores wrong, with its reason."""
    example = load_examples(SAMPLE / "train.json")[0]
    assert finetune.main(["--model_name", str(tiny_model_dir), "--train_file", str(SAMPLE / "train.json"),
                          "--max_train_samples", "1", "--target_field", "code", "--do_train", "--num_train_epochs",
                          "100", "--learning_rate", "5e-3", "--lr_scheduler_type", "constant",
                          "--per_device_train_batch_size", "1", "--save_strategy", "no", "--report_to", "none",
                          "--output_folder", "code"]) == 0
    capsys.readouterr()
    assert inference.main([str(in_tmp / "__output__" / "code" / "final_model"), "--base_model", str(tiny_model_dir),
                           "--test_file", str(SAMPLE / "train.json"), "--id", example.id, "--target_field", "code",
                           "--max_new_tokens", "160"]) == 0
    result = json.loads(capsys.readouterr().out)
    tuned, base = result["finetuned"], result["base"]
    assert tuned["parsed_prediction"] == extract_code(get_target("code").gold_text(example))
    assert tuned["executed_value"] == pytest.approx(example.exe_ans, abs=5e-6)
    assert (tuned["execution_error"], tuned["execution_correct"], tuned["failure_reason"]) == (None, True, None)
    assert base["execution_correct"] is False and base["failure_reason"] == base["execution_error"] is not None
    assert result["target_field"] == "code" and result["gold_exe_ans"] == example.exe_ans
