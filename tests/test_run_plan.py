"""The driver's plan: every setting resolved before the run, read-only, and args.json is exactly what ran."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import SAMPLE
from transformers import AutoModelForCausalLM

from finqa_dsl.core.data import DatasetError
from finqa_dsl.core.errors import UsageError
from finqa_dsl.driver.arguments import DEFAULT_FEW_SHOT_K
from finqa_dsl.driver.pipeline import execute
from finqa_dsl.driver.plan import prepare
from finqa_dsl.runs import files as run_files


def _flags(model_dir, *extra: str) -> list[str]:
    return ["--model_name", str(model_dir), "--train_file", str(SAMPLE / "train.json"),
            "--test_file", str(SAMPLE / "test.json"), "--max_test_samples", "3", "--generation_max_new_tokens", "6",
            "--inference_batch_size", "2", "--report_to", "none", *extra]


@pytest.fixture
def weights_loaded(monkeypatch) -> list[str]:
    """The model folders whose weights were loaded (from_pretrained still runs)."""
    loaded: list[str] = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, name, *args, **kwargs):
        loaded.append(str(name))
        return real(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    return loaded


def test_the_plan_resolves_every_setting_without_loading_weights(in_tmp, tiny_model_dir, weights_loaded):
    plan = prepare(_flags(tiny_model_dir, "--do_test", "--eval_type", "few-shot", "--output_folder", "planned"))
    assert weights_loaded == []
    assert plan.eval_type == "few-shot" and plan.data_args.few_shot_k == DEFAULT_FEW_SHOT_K
    assert plan.generation_args.inference_engine == "prefix"  # what auto means for a Llama, greedy
    assert plan.generation_settings.engine == "prefix" and plan.generation_settings.stop_strings
    assert plan.folder == in_tmp.joinpath("__output__", "planned").relative_to(in_tmp)
    assert plan.training_args.output_dir == str(plan.folder / run_files.CHECKPOINTS)
    assert plan.model_options.peft == "none" and not plan.model_options.quantize_4bit
    assert plan.training_args.train_sampling_strategy == "group_by_length"  # padded batches, grouped by length
    unpadded = prepare(_flags(tiny_model_dir, "--do_train", "--padding_free", "true", "--output_folder", "flat"))
    assert unpadded.training_args.train_sampling_strategy == "random"
    assert len(plan.test.records) == 3
    assert all(record.prompt.count("Question:") >= DEFAULT_FEW_SHOT_K + 1 for record in plan.test.records)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.folder = in_tmp
    assert not plan.folder.exists(), "preparing makes no folder"


def test_args_json_is_the_plan_that_ran(in_tmp, tiny_model_dir):
    plan = prepare(_flags(tiny_model_dir, "--do_test", "--eval_type", "few-shot", "--inference_engine", "auto"))
    folder = execute(plan)
    recorded = json.loads((folder / run_files.ARGS).read_text())
    assert recorded == plan.recorded()
    metrics = json.loads((folder / run_files.TEST_METRICS).read_text())
    rows = [json.loads(line) for line in (folder / run_files.TEST_PREDICTIONS).read_text().splitlines()]
    ran = {"eval_type": metrics["eval_type"], "few_shot_k": metrics["few_shot_k"],
           "inference_engine": metrics["inference_engine"], "n": len(rows),
           "resolved_output_dir": str(folder), "prompts": [row["prompt"] for row in rows]}
    assert ran == {"eval_type": recorded["eval_type"], "few_shot_k": recorded["few_shot_k"],
                   "inference_engine": recorded["inference_engine"], "n": recorded["max_test_samples"],
                   "resolved_output_dir": recorded["resolved_output_dir"],
                   "prompts": [record.prompt for record in plan.test.records]}
    assert (recorded["eval_type"], recorded["few_shot_k"], recorded["inference_engine"]) == (
        "few-shot", DEFAULT_FEW_SHOT_K, "prefix")


@pytest.mark.parametrize(("extra", "error", "message"), [
    (["--do_test", "--generation_num_beams", "2", "--inference_engine", "prefix"], UsageError, "beam search"),
    (["--do_test", "--peft", "dora"], UsageError, "--peft 'dora'"),
    (["--do_test", "--test_file", str(SAMPLE / "missing.json")], UsageError, "no such file"),
])
def test_user_errors_come_from_prepare_before_any_weights_load(in_tmp, tiny_model_dir, weights_loaded, extra,
                                                                error, message):
    with pytest.raises(error, match=message):
        prepare(_flags(tiny_model_dir, *extra))
    assert weights_loaded == []


def test_a_malformed_dataset_is_refused_before_any_weights_load(in_tmp, tiny_model_dir, weights_loaded):
    bad = in_tmp / "bad.json"
    bad.write_text(json.dumps([{"id": "x", "qa": {"question": "?"}}]))
    with pytest.raises(DatasetError, match="bad.json"):
        prepare(_flags(tiny_model_dir, "--do_test", "--test_file", str(bad)))
    assert weights_loaded == []
