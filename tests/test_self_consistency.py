"""Self-consistency (``--num_samples``): the vote by executed value with the official rounding, ties by summed
log-probability, the greedy/voted/oracle metrics, every sample in the predictions file (resumable), the samples of
one prompt encoded once, and log-probabilities that are the model's own.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SAMPLE, tiny_model

from finqa_dsl.core import metrics as m
from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.prompts import build_prompt_records
from finqa_dsl.core.targets import get_target
from finqa_dsl.core.voting import self_consistency_metrics, vote, voted_rows
from finqa_dsl.inference.engines import prefix
from finqa_dsl.inference.hf_backend import HFBackend
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.runs import files as run_files
from scripts import compare_runs
from scripts import finetune as driver
from scripts import report as report_script
from scripts import score_predictions as score_script

PROGRAM = get_target("program")


@pytest.fixture(scope="module")
def example(real_finqa_dir):
    """A real dev example: gold ``divide(637, const_5)`` = 127.4."""
    return next(e for e in load_examples(real_finqa_dir / "dev.json") if e.id == "V/2008/page_17.pdf-1")


def _rows(example, *samples: tuple[str, float | None]) -> list[dict]:
    """Scored rows of one example's samples ``(generation, logprob)``, as the driver writes them."""
    return [{"id": example.id, "sample": number, "logprob": logprob, "generation": text,
             **PROGRAM.row_fields(text, example, example.program)}
            for number, (text, logprob) in enumerate(samples)]


def test_the_vote_goes_to_the_value_most_samples_reach(example):
    rows = _rows(example, ("subtract(637, 5)", -1.0), ("divide(637, 5)", -4.0), ("divide(1274, const_10)", -3.0),
                 ("add(637, 5)", -0.5))
    chosen = vote(rows)
    assert chosen["executed_value"] == pytest.approx(127.4) and chosen["sample"] == 2  # the likelier of the two
    metrics = self_consistency_metrics(rows, PROGRAM.summarize)
    assert metrics["num_samples"] == 4 and metrics["n"] == 1
    assert (metrics[m.EXECUTION_ACCURACY], metrics["voted_execution_accuracy"],
            metrics["oracle_execution_accuracy"]) == (0.0, 1.0, 1.0)
    assert metrics["voted_program_accuracy"] == 0.0, "divide(1274, const_10) is not the gold program"
    right = _rows(example, ("add(1, 2)", -1.0), ("divide(637, const_5)", -2.0), ("divide(637, 5)", -3.0))
    assert self_consistency_metrics(right, PROGRAM.summarize)["voted_program_accuracy"] == 1.0


def test_values_are_compared_after_the_official_rounding(example):
    rows = _rows(example, ("divide(10, 3)", -1.0), ("divide(1, 3)", -5.0), ("divide(2, 6)", -5.0))
    assert rows[1]["executed_value"] == rows[2]["executed_value"] == 0.33333  # 5 decimals, as official
    assert vote(rows)["sample"] in (1, 2)
    code = [{"id": "x", "sample": 0, "logprob": -1.0, "executed_value": 1.0},
            {"id": "x", "sample": 1, "logprob": -3.0, "executed_value": 1 / 3},
            {"id": "x", "sample": 2, "logprob": -3.0, "executed_value": 0.333333333}]
    assert vote(code)["sample"] == 1, "code values agree to 5 decimals"


def test_a_tie_goes_to_the_higher_summed_log_probability(example):
    rows = _rows(example, ("add(1, 1)", -1.0), ("add(1, 1)", -1.0), ("add(2, 2)", -0.1), ("add(2, 2)", -3.0))
    assert vote(rows)["executed_value"] == 2.0, "-2.0 beats -3.1, though the single likeliest sample says 4"


def test_an_example_without_any_value_keeps_sample_0(example):
    rows = _rows(example, ("sum(1, 2)", -1.0), ("add(1,2)", -0.1), ("", -0.2))
    assert vote(rows)["sample"] == 0


def test_a_file_of_one_sample_per_example_has_no_vote(example):
    rows = _rows(example, ("divide(637, const_5)", -1.0))
    metrics = self_consistency_metrics(rows, PROGRAM.summarize)
    assert metrics == PROGRAM.summarize(rows) and "num_samples" not in metrics


@pytest.fixture(scope="module")
def random_model(default_tokenizer):
    return tiny_model("llama", vocab_size=len(default_tokenizer), initializer_range=0.5,
                      max_position_embeddings=4096, eos_token_id=default_tokenizer.eos_token_id).eval()


def _records(tokenizer, n: int):
    records, _ = build_prompt_records(load_examples(SAMPLE / "test.json")[:n], target_field="program",
                                      context_config=ContextConfig(), tokenizer=tokenizer)
    return records


def test_the_samples_of_one_prompt_are_encoded_once(random_model, default_tokenizer, monkeypatch):
    """Three copies each of two prompts in the prefix engine: two suffixes go through the model, and every copy
    gets the greedy output the prompt gets alone."""
    records = _records(default_tokenizer, 2)
    encoded = []
    packed = prefix.packed_suffixes
    monkeypatch.setattr(prefix, "packed_suffixes",
                        lambda model, shared, suffixes: encoded.extend(suffixes) or packed(model, shared, suffixes))
    settings = GenerationSettings(max_new_tokens=8, engine="prefix", batch_size=6)
    alone = {record.id: g.text for record, g in HFBackend(random_model, default_tokenizer)(records, settings)}
    encoded.clear()
    copies = [record for record in records for _ in range(3)]
    together = list(HFBackend(random_model, default_tokenizer)(copies, settings))
    assert len(encoded) == 2 and len(together) == 6
    assert all(g.text == alone[record.id] for record, g in together)


@pytest.mark.parametrize("engine", ["static", "prefix", "continuous"])
def test_log_probabilities_are_the_models_own(random_model, default_tokenizer, engine):
    """A generation's logprob is the sum of the model's log-softmax at its tokens, read again by one forward pass
    over prompt and generation."""
    records = _records(default_tokenizer, 3)
    settings = GenerationSettings(max_new_tokens=6, engine=engine, batch_size=2)
    for record, generation in HFBackend(random_model, default_tokenizer)(records, settings):
        prompt = default_tokenizer(record.prompt, add_special_tokens=False)["input_ids"]
        new = default_tokenizer(generation.text, add_special_tokens=False)["input_ids"]
        if len(new) != generation.new_tokens:  # the text does not re-encode to the same tokens: skip it
            continue
        with torch.no_grad():
            logits = random_model(torch.tensor([prompt + new])).logits[0, len(prompt) - 1:-1]
        expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(new)[:, None]).sum().item()
        assert generation.logprob == pytest.approx(expected, abs=1e-3), (engine, record.id)


@pytest.mark.slow
def test_num_samples_writes_every_sample_and_the_vote(in_tmp, tiny_model_dir, capsys):
    flags = ["--model_name", str(tiny_model_dir), "--test_file", str(SAMPLE / "test.json"), "--max_test_samples",
             "4", "--do_test", "--target_field", "program", "--generation_max_new_tokens", "12",
             "--constrained_decoding", "--report_to", "none"]
    assert driver.main([*flags, "--output_folder", "greedy"]) == 0
    assert driver.main([*flags, "--num_samples", "4", "--generation_temperature", "1.5",
                        "--output_folder", "sampled"]) == 0
    greedy = [json.loads(line) for line in (in_tmp / "__output__/greedy" / run_files.TEST_PREDICTIONS).open()]
    path = in_tmp / "__output__/sampled" / run_files.TEST_PREDICTIONS
    rows = [json.loads(line) for line in path.open()]
    assert [(row["id"], row["sample"]) for row in rows] == [(row["id"], s) for row in greedy for s in range(4)]
    assert [row["generation"] for row in rows if row["sample"] == 0] == [row["generation"] for row in greedy]
    assert all(isinstance(row["logprob"], float) for row in rows)
    assert len({row["generation"] for row in rows if row["sample"] > 0}) > 1, "samples differ"
    metrics = json.loads((in_tmp / "__output__/sampled" / run_files.TEST_METRICS).read_text())
    assert metrics == {**metrics, **self_consistency_metrics(rows, PROGRAM.summarize)}
    assert metrics["num_samples"] == 4 and metrics["n"] == 4
    assert metrics["oracle_execution_accuracy"] >= max(metrics["voted_execution_accuracy"],
                                                        metrics[m.EXECUTION_ACCURACY])

    # an interrupted run (no timing.json yet) resumes: the missing samples only, each once
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:6]))
    (in_tmp / "__output__/sampled" / run_files.TIMING).unlink()
    assert driver.main([*flags, "--num_samples", "4", "--generation_temperature", "1.5",
                        "--output_folder", "sampled"]) == 0
    resumed = [json.loads(line) for line in path.open()]
    assert [(row["id"], row["sample"]) for row in resumed] == [(row["id"], row["sample"]) for row in rows]
    assert resumed[:6] == rows[:6]

    capsys.readouterr()
    assert score_script.main([str(path)]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in rescored.items() if k in metrics} == {k: metrics[k] for k in rescored if k in metrics}
    assert rescored["voted_execution_accuracy"] == metrics["voted_execution_accuracy"]
    assert compare_runs.main([str(in_tmp / "__output__/greedy"), str(in_tmp / "__output__/sampled")]) == 0
    table = capsys.readouterr().out
    assert "voted_execution_accuracy" in table and "oracle_execution_accuracy" in table
    for samples in ("greedy", "voted"):
        assert report_script.main([str(in_tmp / "__output__/sampled"), str(in_tmp / "__output__/greedy"),
                                   "--samples", samples, "--output_dir", str(in_tmp / samples)]) == 0
        report = json.loads((in_tmp / samples / "report.json").read_text())
        chosen = {"greedy": [row for row in rows if row["sample"] == 0], "voted": voted_rows(rows)}[samples]
        assert [(run["n"], run["right"]) for run in report["runs"]] == [
            (4, sum(row["execution_correct"] for row in chosen)), (4, metrics[m.EXECUTION_CORRECT])]
