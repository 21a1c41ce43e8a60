"""Conformance with the official FinQA evaluator on real data (../shared/FinQA; skipped when absent).

The pinned numbers were obtained by running the official ``code/evaluate/evaluate.py`` of czyssrs/FinQA
(``eval_program`` and ``equal_program`` on ``program_tokenization`` of each prediction and gold program),
from a private copy kept outside this repository, on exactly the data these tests read: each peer
``test_predictions.jsonl`` joined by id with ``real/test.json`` (770 of the 1,147 test ids are there; the
other 377 are left out), and, for program accuracy over all 1,147 lines, the gold program each peer line
carries. The peer's own per-line flags agree with the official ones on every line of these runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from finqa_dsl.core import metrics
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.dsl import execute, programs_equivalent
from finqa_dsl.core.metrics import score_answer_prediction
from finqa_dsl.core.targets import score_predictions

REAL_SPLITS = {"train.json": 118, "dev.json": 457, "dev_convfinqa_derived.json": 142, "test.json": 770}

# run -> (execution_correct, program_correct) of the official evaluator on the 770 joined ids,
#        program_correct of the official equal_program on all 1,147 lines (gold program from each line)
OFFICIAL = {
    "gemma-input_gold-output_program": (426, 399, 728),
    "gemma-input_noisy_gold-output_program--4": (305, 282, 502),
    "gemma3-4b-qlora-input_gold-output_program": (394, 360, 654),
    "gemma3-4b-qlora-input_noisy_gold-output_program": (313, 280, 493),
    "qwen2-5-coder-3b-instruct-full-input_gold-output_program": (522, 489, 832),
    "qwen2-5-coder-3b-instruct-full-input_noisy_gold-output_program": (391, 362, 609),
}


@pytest.fixture(scope="module")
def test_examples(real_finqa_dir):
    return load_examples(real_finqa_dir / "test.json")


def read_lines(peer_predictions_dir: Path, run: str) -> list[dict]:
    path = peer_predictions_dir / run / "test_predictions.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_real_gold_program_reproduces_its_exe_ans(real_finqa_dir):
    checked = 0
    for name, count in REAL_SPLITS.items():
        examples = load_examples(real_finqa_dir / name)
        assert len(examples) == count
        wrong = [(e.id, e.program, execute(e.program, e.table), e.exe_ans) for e in examples
                 if execute(e.program, e.table).value != e.exe_ans]
        assert wrong == []
        checked += len(examples)
    assert checked == 1487


@pytest.mark.parametrize("run", sorted(OFFICIAL))
def test_peer_runs_score_exactly_as_official(run, peer_predictions_dir, test_examples):
    lines = read_lines(peer_predictions_dir, run)
    assert len(lines) == 1147
    pairs = [(line["id"], line["prediction"]) for line in lines]
    summary = score_predictions(pairs, test_examples, "program")
    execution_correct, program_correct, program_correct_all = OFFICIAL[run]
    assert (summary[metrics.N], summary[metrics.N_LEFT_OUT]) == (770, 377)
    assert summary[metrics.EXECUTION_CORRECT] == execution_correct
    assert summary[metrics.PROGRAM_CORRECT] == program_correct
    assert summary[metrics.EXECUTION_ACCURACY] == execution_correct / 770
    all_lines = sum(programs_equivalent(line["gold_program"], line["prediction"]) for line in lines)
    assert all_lines == program_correct_all


def test_score_predictions_cli_prints_the_official_numbers(peer_predictions_dir, real_finqa_dir):
    run = "qwen2-5-coder-3b-instruct-full-input_gold-output_program"
    predictions = peer_predictions_dir / run / "test_predictions.jsonl"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "score_predictions.py"), str(predictions),
         "--gold", str(real_finqa_dir / "test.json")],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(result.stdout)
    counts = (summary["n"], summary["n_left_out"], summary["execution_correct"], summary["program_correct"])
    assert counts == (770, 377, 522, 489)
    assert summary["execution_accuracy"] == 522 / 770 and summary["program_accuracy"] == 489 / 770


def test_numerical_runs_score_94_point_0_as_94(peer_predictions_dir):
    """The peer compared numerical answers as strings; "0.0" against gold "0" is a match for us."""
    lines = read_lines(peer_predictions_dir, "qwen2-5-coder-3b-instruct-full-input_gold-output_numerical")
    formatting_misses = [line for line in lines if line["prediction"] == "0.0" and line["gold_target"] == "0"]
    assert formatting_misses and not any(line["answer_accuracy"] for line in formatting_misses)
    assert all(score_answer_prediction(line["prediction"], 0.0).strict for line in formatting_misses)
