"""Score predictions against FinQA gold: official execution/program accuracy, strict and tolerant answer
matches, executed Python code (official, tolerant, and within 1e-3 absolute: the PoT-distillation study's rule),
latency statistics, inference totals. Every metric and per-row score field name is defined here,
once (the other keys of a predictions row: :mod:`finqa_dsl.core.prediction_rows`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.data import Example
from finqa_dsl.core.dsl import NO, YES, Reason, clean_generation, execute, programs_equivalent, tokenize
from finqa_dsl.core.python_code import NO_CODE, CodeExecution

# Summary keys.
N = "n"
N_LEFT_OUT = "n_left_out"  # predictions whose id is not in the gold file
N_MISSING_GOLD = "n_missing_gold"  # examples without the gold target (e.g. no qa.answer), not scored
N_DUPLICATE_IDS = "n_duplicate_ids"  # prediction lines repeating an earlier line's id (each is scored)
TARGET_FIELD = row_keys.TARGET_FIELD
EXECUTION_CORRECT = "execution_correct"
PROGRAM_CORRECT = "program_correct"
EXECUTION_ACCURACY = "execution_accuracy"
PROGRAM_ACCURACY = "program_accuracy"
EXECUTION_ERRORS = "execution_errors"  # reason -> count
ANSWER_CORRECT_STRICT = "answer_correct_strict"
ANSWER_CORRECT_TOLERANT = "answer_correct_tolerant"
ANSWER_ACCURACY_STRICT = "answer_accuracy_strict"
ANSWER_ACCURACY_TOLERANT = "answer_accuracy_tolerant"
ANSWER_CORRECT_ABS_1E3 = "answer_correct_abs_1e3"  # code target: within 1e-3 absolute, the study's own rule
ANSWER_ACCURACY_ABS_1E3 = "answer_accuracy_abs_1e3"
# Keys that earlier versions wrote, and the keys they are now: metrics and predictions files already on disk may
# carry them; :func:`with_current_keys` reads them as today's.
RENAMED_KEYS = {"answer_correct_seed_rule": ANSWER_CORRECT_ABS_1E3,
                "answer_accuracy_seed_rule": ANSWER_ACCURACY_ABS_1E3}
# Per-prediction fields (besides the *_correct flags above).
EXECUTED_VALUE = "executed_value"
EXECUTION_ERROR = "execution_error"
EXECUTION_DETAIL = "execution_detail"  # code target: the sandbox's detail (exception type, refused operation...)
PREDICTED_VALUE = "predicted_value"
FAILURE_REASON = "failure_reason"  # why a prediction is scored wrong (None when it is right)
WRONG_VALUE = "wrong_value"  # a failure reason: the prediction ran or parsed, but its value is wrong
UNPARSEABLE = "unparseable"  # a failure reason: the answer is neither a number nor yes/no
# Latency statistics keys (milliseconds).
LATENCY_KEYS = ("avg", "p50", "p90", "p95", "p99", "total")
LATENCY_METRIC_PREFIX = "inference_latency_ms_"  # + a latency key, over every row of the predictions file
# Inference totals. Over every row of the predictions file, like N and the latencies, resumed rows included:
INFERENCE_TOTAL_SECONDS = "inference_total_seconds"  # sum of the rows' share_ms: the generation wall time
INFERENCE_NEW_TOKENS = "inference_new_tokens"
INFERENCE_EXAMPLES_RESUMED = "inference_examples_resumed"  # rows an earlier, interrupted run wrote
# Over what this run generated (the rows not resumed):
INFERENCE_EXAMPLES_GENERATED = "inference_examples_generated"
INFERENCE_SESSION_SECONDS = "inference_session_seconds"  # wall clock of this run's generation
INFERENCE_SESSION_NEW_TOKENS = "inference_session_new_tokens"
# The per-example verdicts a scored row may carry, in the order a target's default is chosen (runs.report).
CORRECT_FLAGS = (EXECUTION_CORRECT, PROGRAM_CORRECT, ANSWER_CORRECT_STRICT, ANSWER_CORRECT_TOLERANT,
                 ANSWER_CORRECT_ABS_1E3)
# Self-consistency (--num_samples, finqa_dsl.core.voting): the accuracies are sample 0's (greedy by default), beside
# the vote's and the oracle's under these prefixes.
NUM_SAMPLES = "num_samples"
VOTED, ORACLE = "voted_", "oracle_"
# The metrics that compare runs at a glance (scripts/compare_runs.py).
HEADLINE_METRICS = (TARGET_FIELD, N, EXECUTION_ACCURACY, PROGRAM_ACCURACY, ANSWER_ACCURACY_STRICT,
                    ANSWER_ACCURACY_TOLERANT, ANSWER_ACCURACY_ABS_1E3, NUM_SAMPLES, VOTED + EXECUTION_ACCURACY,
                    ORACLE + EXECUTION_ACCURACY, VOTED + PROGRAM_ACCURACY, VOTED + ANSWER_ACCURACY_TOLERANT,
                    ORACLE + ANSWER_ACCURACY_TOLERANT, LATENCY_METRIC_PREFIX + "avg", INFERENCE_TOTAL_SECONDS)

TOLERANT_REL_TOL = 1e-3
TOLERANT_ABS_TOL = 1e-9
ABS_1E3_TOL = 1e-3
# The PoT-distillation study's evaluation also accepts the value divided by these (a result in units vs in
# thousands...); its teacher filter divides by nothing (1 only).
STUDY_EVAL_DIVISORS = (1, 100, 1_000, 1_000_000, 1_000_000_000)


@dataclass(frozen=True)
class ProgramScore:
    """A predicted program scored the official way."""

    value: float | str | None  # the executed value (rounded to 5 decimals) or None
    reason: Reason | None  # why there is no value
    execution_correct: bool  # executed without error and equals exe_ans
    program_correct: bool  # symbolically equivalent to the gold program

    def as_row(self) -> dict[str, Any]:
        return {EXECUTED_VALUE: _json_value(self.value), EXECUTION_ERROR: self.reason and str(self.reason),
                EXECUTION_CORRECT: self.execution_correct, PROGRAM_CORRECT: self.program_correct}


@dataclass(frozen=True)
class AnswerScore:
    """A predicted answer (number or text) against the gold answer."""

    value: float | str | None  # the prediction read as a number or yes/no; None if neither
    strict: bool
    tolerant: bool

    def as_row(self) -> dict[str, Any]:
        return {PREDICTED_VALUE: _json_value(self.value), ANSWER_CORRECT_STRICT: self.strict,
                ANSWER_CORRECT_TOLERANT: self.tolerant}


def score_program_prediction(prediction: str, example: Example) -> ProgramScore:
    """Execution and program accuracy of one generated program, exactly as the official evaluator.

    The generation is cleaned (:func:`finqa_dsl.core.dsl.clean_generation`) and tokenized once; the gold
    program is tokenized as is.
    """
    tokens = tokenize(clean_generation(prediction))
    execution = execute(tokens, example.table)
    return ProgramScore(
        value=execution.value,
        reason=execution.reason,
        execution_correct=execution.ok and execution.value == example.exe_ans,
        program_correct=programs_equivalent(example.program, tokens),
    )


def score_answer_prediction(prediction: str, gold: float | str, *,
                            rel_tol: float = TOLERANT_REL_TOL) -> AnswerScore:
    """Compare a predicted answer with the gold (``exe_ans`` for the numerical target, ``qa.answer`` for
    the answer target).

    strict: the same number written plainly (``float``; ``"94.0"`` equals ``94``), compared after
    rounding both to 5 decimals as official execution accuracy does; otherwise the same text (yes/no
    included), surrounding whitespace aside.
    tolerant: ``$``, ``,`` and spaces ignored; ``x%`` reads as x/100 or as x (so ``14.5%``, ``0.145`` and
    ``14.5`` can match ``14.5%``); numbers match within ``rel_tol``, or, against a gold written as text
    (the answer target, rounded by its annotators), when the prediction rounds to it (``0.14464`` matches
    ``14.5%``); yes/no and other text compared case-insensitively without trailing punctuation.
    """
    text = clean_generation(prediction)
    strict = _strict_match(text, gold if isinstance(gold, str) else repr(gold))
    predicted = [value for value, _ in _readings(text)]
    if not predicted:
        words = _words(text)
        tolerant = isinstance(gold, str) and words == _words(gold)
        return AnswerScore(value=words if words in (YES, NO) else None, strict=strict, tolerant=tolerant)
    golds = _readings(gold) if isinstance(gold, str) else [(float(gold), None)]
    tolerant = any(
        math.isclose(value, gold_value, rel_tol=rel_tol, abs_tol=TOLERANT_ABS_TOL)
        or (decimals is not None and round(value, decimals) == round(gold_value, decimals))
        for value in predicted for gold_value, decimals in golds
    )
    return AnswerScore(value=predicted[0], strict=strict, tolerant=tolerant)


def matches_within_abs_1e3(actual: float | str | None, expected: float | str, *,
                           divisors: Sequence[float] = (1,)) -> bool:
    """The PoT-distillation study's comparison: ``|expected - actual / d| < 1e-3`` for a divisor ``d``, else the
    same text case-insensitively (True/False read as yes/no)."""
    if actual is None:
        return False
    actual_number, expected_number = _plain_number(str(actual)), _plain_number(str(expected))
    if actual_number is not None and expected_number is not None:
        return any(abs(expected_number - actual_number / d) < ABS_1E3_TOL for d in divisors)
    return _yes_no(str(actual)) == str(expected).strip().lower()


def answer_tolerant_match(actual: float | str | None, expected: float | str) -> bool:
    """The project's tolerant match (:func:`score_answer_prediction`) of an executed value with the gold, which
    also accepts what official rounding accepts (``exe_ans`` is rounded to 5 decimals, so a tiny value can differ
    from it by more than the relative tolerance)."""
    if actual is None:
        return False
    number, gold = _plain_number(str(actual)), _plain_number(str(expected))
    if number is not None and gold is not None and round(number, 5) == round(gold, 5):
        return True
    return score_answer_prediction(_yes_no(str(actual)), expected).tolerant


def score_code_prediction(execution: CodeExecution, example: Example) -> dict[str, Any]:
    """The per-prediction fields of a Python-code prediction, from what running its code gave: official execution
    accuracy (the value rounded to 5 decimals equals ``exe_ans``), the tolerant match and the
    PoT-distillation study's rule (within 1e-3 absolute)."""
    reason = NO_CODE if execution.code is None else execution.reason
    value = execution.value if reason is None else None
    official = round(value, 5) if isinstance(value, float) else value
    correct = reason is None and official == example.exe_ans
    return {EXECUTED_VALUE: _json_value(value), EXECUTION_ERROR: reason, EXECUTION_DETAIL: execution.detail or None,
            EXECUTION_CORRECT: correct, ANSWER_CORRECT_TOLERANT: answer_tolerant_match(value, example.exe_ans),
            ANSWER_CORRECT_ABS_1E3: matches_within_abs_1e3(value, example.exe_ans, divisors=STUDY_EVAL_DIVISORS),
            FAILURE_REASON: reason or (None if correct else WRONG_VALUE)}


def with_current_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a metrics object or a scored predictions row) with the keys of :data:`RENAMED_KEYS` that an
    earlier version wrote read as today's: the one place where old files are mapped to the current names."""
    return {RENAMED_KEYS.get(key, key): value for key, value in values.items()}


def latency_stats(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """avg, p50, p90, p95, p99 (numpy's linear percentiles) and total, in ms; all None when empty."""
    if len(latencies_ms) == 0:
        return dict.fromkeys(LATENCY_KEYS)
    values = np.asarray(latencies_ms, dtype=float)
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return {"avg": float(values.mean()), "p50": float(p50), "p90": float(p90), "p95": float(p95),
            "p99": float(p99), "total": float(values.sum())}


def inference_totals(rows: Sequence[Mapping[str, Any]], *, generated: int, session_seconds: float,
                     session_new_tokens: int) -> dict[str, Any]:
    """Latency statistics and inference totals over every predictions row (resumed ones included), beside
    what this run generated (``generated`` rows in ``session_seconds``, ``session_new_tokens``).

    ``inference_total_seconds`` adds up the rows' ``share_ms`` (their parts of the generation wall time).
    """
    latencies = [row[row_keys.LATENCY_MS] for row in rows]
    stats = latency_stats(latencies)
    return {
        **{LATENCY_METRIC_PREFIX + key: value for key, value in stats.items() if key != "total"},
        INFERENCE_TOTAL_SECONDS: sum(row[row_keys.SHARE_MS] for row in rows) / 1000,
        INFERENCE_NEW_TOKENS: sum(row[row_keys.NEW_TOKENS] for row in rows),
        INFERENCE_EXAMPLES_RESUMED: len(rows) - generated,
        INFERENCE_EXAMPLES_GENERATED: generated,
        INFERENCE_SESSION_SECONDS: session_seconds,
        INFERENCE_SESSION_NEW_TOKENS: session_new_tokens,
    }


def count_true(rows: list[Mapping[str, Any]], field: str) -> int:
    """How many scored ``rows`` have ``field`` true (ValueError naming the field when a row lacks it)."""
    try:
        return sum(bool(row[field]) for row in rows)
    except KeyError:
        raise ValueError(f"a scored row lacks {field!r}: rows must carry score_prediction's fields") from None


def _json_value(value: float | str | None) -> float | str | None:
    """Non-finite floats as text ("nan", "inf"), so rows stay valid JSON."""
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value


def _plain_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _strict_match(text: str, gold_text: str) -> bool:
    value, gold_value = _plain_number(text), _plain_number(gold_text)
    if value is not None and gold_value is not None:
        return round(value, 5) == round(gold_value, 5)
    return text.strip() == gold_text.strip()


def _readings(text: str) -> list[tuple[float, int]]:
    """The numbers ``text`` may mean, each with the decimals it is written to: ``x`` -> [(x, d)];
    ``x%`` -> [(x/100, d+2), (x, d)]; [] if it is not a number."""
    compact = "".join(text.replace("$", "").replace(",", "").split())
    digits = compact.removesuffix("%")
    value = _plain_number(digits)
    if value is None:
        return []
    decimals = len(digits.partition(".")[2]) if "e" not in digits.lower() else 5
    return [(value / 100, decimals + 2), (value, decimals)] if compact.endswith("%") else [(value, decimals)]


def _words(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!")


def _yes_no(text: str) -> str:
    """True/False (as the sandbox or a CSV writes a bool) read as yes/no; other text lower-cased and stripped."""
    text = text.strip().lower()
    return {"true": YES, "false": NO}.get(text, text)
