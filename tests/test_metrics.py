"""Metrics: official execution/program accuracy per prediction, strict and tolerant answers, latency."""

from __future__ import annotations

import numpy as np
import pytest

from finqa_dsl.core import metrics
from finqa_dsl.core.data import Example
from finqa_dsl.core.dsl import Reason
from finqa_dsl.core.metrics import latency_stats, score_answer_prediction, score_program_prediction
from finqa_dsl.core.targets import get_target, score_predictions


def example(example_id="ETR/2016/page_23.pdf-2", program="subtract(5829, 5735)", exe_ans=94.0, answer="94",
            table=(("", "2016"), ("revenue", "$ 5,829"))) -> Example:
    return Example(id=example_id, question="q?", program=program, exe_ans=exe_ans, answer=answer, pre_text=(),
                   post_text=(), table=table, gold_inds=None, raw={})


@pytest.mark.parametrize(("prediction", "value", "reason", "execution_correct", "program_correct"), [
    ("subtract(5829, 5735)", 94.0, None, True, True),
    ("subtract(5829, 5735)<end_of_turn>", 94.0, None, True, True),
    (" subtract(5829, 5735) EOF\n", 94.0, None, True, True),
    ("subtract(table_max(revenue, none), 5735)", None, Reason.MALFORMED, False, False),
    ("table_max(revenue, none), subtract(#0, 5735)", 94.0, None, True, False),  # right value, other program
    ("add(94, 0)", 94.0, None, True, False),  # 94 and 0 are not literals of the gold program
    ("subtract(5735, 5829)", -94.0, None, False, False),
    ("subtract(5829,5735)", None, Reason.MALFORMED, False, False),
])
def test_score_program_prediction(prediction, value, reason, execution_correct, program_correct):
    score = score_program_prediction(prediction, example())
    assert (score.value, score.reason, score.execution_correct, score.program_correct) == (
        value, reason, execution_correct, program_correct)


def test_program_row_is_json_ready():
    row = get_target("program").score("divide(1, 0)", example())
    assert row == {metrics.EXECUTED_VALUE: None, metrics.EXECUTION_ERROR: "division_by_zero",
                   metrics.EXECUTION_CORRECT: False, metrics.PROGRAM_CORRECT: False,
                   metrics.FAILURE_REASON: "division_by_zero"}
    overflowing = get_target("program").score("exp(10, 308), multiply(#0, 10)", example())
    assert overflowing[metrics.EXECUTED_VALUE] == "inf"


@pytest.mark.parametrize(("prediction", "gold", "strict", "tolerant"), [
    ("94", 94.0, True, True),
    ("94.0", 94.0, True, True),  # the peer scored this by string equality against "94" and missed it
    ("94.000001", 94.0, True, True),  # equal after rounding to 5 decimals, as official execution accuracy
    ("94.05", 94.0, False, True),  # within the relative tolerance (1e-3)
    ("94.5", 94.0, False, False),
    ("299.0", 300.0, False, False),
    ("$ 94", 94.0, False, True),
    ("1,234", 1234.0, False, True),
    ("14.5%", 0.145, False, True),  # percent vs fraction
    ("14.464%", 0.14464, False, True),
    ("0.14464", "14.5%", False, True),  # the answer target's gold is rounded by annotators
    ("0.145", "14.5%", False, True),
    ("14.5", "14.5%", False, True),
    ("14.5%", "14.5%", True, True),
    ("0.13", "14.5%", False, False),
    ("$ 1,234 million", "$ 1,234 million", True, True),
    ("yes", "yes", True, True),
    ("Yes.", "yes", False, True),
    ("no", "yes", False, False),
    ("1", "yes", False, False),
    ("", 94.0, False, False),
    ("94<end_of_turn>", 94.0, True, True),
])
def test_score_answer_prediction(prediction, gold, strict, tolerant):
    score = score_answer_prediction(prediction, gold)
    assert (score.strict, score.tolerant) == (strict, tolerant)


def test_answer_values():
    assert score_answer_prediction("14.5%", 0.145).value == pytest.approx(0.145)
    assert score_answer_prediction(" Yes ", "yes").value == "yes"
    assert score_answer_prediction("unknown", 1.0).value is None


def test_summarize_program_rows():
    rows = [get_target("program").score(text, example()) for text in
            ("subtract(5829, 5735)", "add(94, 0)", "divide(1, 0)", "sum(1, 2)")]
    assert get_target("program").summarize(rows) == {
        metrics.TARGET_FIELD: "program", metrics.N: 4,
        metrics.EXECUTION_CORRECT: 2, metrics.PROGRAM_CORRECT: 1,
        metrics.EXECUTION_ACCURACY: 0.5, metrics.PROGRAM_ACCURACY: 0.25,
        metrics.EXECUTION_ERRORS: {"division_by_zero": 1, "unknown_op": 1},
    }


def test_summarize_answer_rows_and_empty_input():
    rows = [get_target("numerical").score(text, example()) for text in ("94.0", "94.05", "12")]
    summary = get_target("numerical").summarize(rows)
    assert (summary[metrics.ANSWER_CORRECT_STRICT], summary[metrics.ANSWER_CORRECT_TOLERANT]) == (1, 2)
    assert summary[metrics.ANSWER_ACCURACY_TOLERANT] == pytest.approx(2 / 3)
    assert summary[metrics.PROGRAM_ACCURACY] is None
    assert get_target("program").summarize([])[metrics.EXECUTION_ACCURACY] is None
    with pytest.raises(ValueError, match="target_field"):
        get_target("python").summarize([])
    with pytest.raises(ValueError, match="execution_correct"):
        get_target("program").summarize([{"id": "x"}])


def test_score_predictions_joins_by_id_and_counts_what_it_leaves_out():
    gold = [example("a"), example("b", answer=None)]
    pairs = [("a", "subtract(5829, 5735)"), ("b", "add(1, 2)"), ("zzz", "subtract(5829, 5735)"),
             ("a", "subtract(5829, 5735)")]
    summary = score_predictions(pairs, gold, "program")
    assert (summary[metrics.N], summary[metrics.N_LEFT_OUT], summary[metrics.EXECUTION_CORRECT]) == (3, 1, 2)
    answers = score_predictions(pairs, gold, "answer")
    assert (answers[metrics.N], answers[metrics.N_LEFT_OUT], answers[metrics.N_MISSING_GOLD]) == (2, 1, 1)
    assert answers[metrics.ANSWER_CORRECT_STRICT] == 0  # "subtract(...)" is not the answer "94"


def test_latency_stats_match_numpy_linear_percentiles():
    latencies = [120.0, 80.5, 300.25, 95.0, 101.0, 99.0, 2000.0]
    stats = latency_stats(latencies)
    assert list(stats) == list(metrics.LATENCY_KEYS)
    assert stats["avg"] == pytest.approx(np.mean(latencies))
    assert stats["total"] == pytest.approx(sum(latencies))
    for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert stats[key] == pytest.approx(np.percentile(latencies, q))
    assert stats["p50"] == 101.0
    assert latency_stats([]) == dict.fromkeys(metrics.LATENCY_KEYS)


@pytest.mark.parametrize(("prediction", "target_field", "reason"), [
    ("subtract(5829, 5735)", "program", None),
    ("subtract(5735, 5829)", "program", metrics.WRONG_VALUE),
    ("subtract(5829 5735)", "program", "malformed"),
    ("94.0", "numerical", None),
    ("95", "numerical", metrics.WRONG_VALUE),
    ("ninety-four", "numerical", metrics.UNPARSEABLE),
])
def test_failure_reason_says_why_a_prediction_is_wrong(prediction, target_field, reason):
    assert get_target(target_field).score(prediction, example())[metrics.FAILURE_REASON] == reason
