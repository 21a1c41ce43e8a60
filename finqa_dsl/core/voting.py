"""Self-consistency over the samples of each example (``--num_samples N``): the majority vote by executed value,
and the greedy, voted and oracle accuracies.

A predictions file of such a run holds N scored rows per example, told apart by ``sample`` (0 to N-1; sample 0 is
the flags' own decoding, greedy by default). :func:`voted_rows` picks one row per example: among the samples that
have a value (a program or code that ran, an answer that parsed), the value most of them reach, compared after the
official rounding to 5 decimals; a tie goes to the value whose samples have the higher summed log-probability, and
the row given is that value's most probable sample, so its program is scored as it stands. An example with no value
in any sample keeps sample 0. :func:`self_consistency_metrics` scores the greedy rows, the voted rows and an
oracle (an example counts as right when any sample is right), each with the target's own official semantics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from finqa_dsl.core import metrics as m
from finqa_dsl.core import prediction_rows as row_keys

SAMPLE = row_keys.SAMPLE
LOGPROB = row_keys.LOGPROB
# The accuracies reported per way of choosing (the oracle takes each of metrics.CORRECT_FLAGS from any sample).
ACCURACY_KEYS = (m.EXECUTION_CORRECT, m.EXECUTION_ACCURACY, m.PROGRAM_CORRECT, m.PROGRAM_ACCURACY,
                 m.ANSWER_CORRECT_STRICT, m.ANSWER_ACCURACY_STRICT, m.ANSWER_CORRECT_TOLERANT,
                 m.ANSWER_ACCURACY_TOLERANT, m.ANSWER_CORRECT_ABS_1E3, m.ANSWER_ACCURACY_ABS_1E3)


def sample_of(row: Mapping[str, Any]) -> int:
    """The row's sample number (0 for files written before samples existed)."""
    return row.get(SAMPLE) or 0


def by_example(rows: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The rows grouped by id, in order of first appearance, each group by sample number."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[row_keys.ID]].append(row)
    return [sorted(group, key=sample_of) for group in groups.values()]


def greedy_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Sample 0 of every example (every row of a file without samples)."""
    return [row for row in rows if sample_of(row) == 0]


def _vote_value(row: Mapping[str, Any]) -> float | str | None:
    """What a sample votes for: its executed value (program, code) or parsed answer, floats rounded to 5
    decimals as the official evaluator rounds results; None when it has none."""
    value = row.get(m.EXECUTED_VALUE, row.get(m.PREDICTED_VALUE))
    if isinstance(value, bool) or value is None:
        return value
    return round(float(value), 5) if isinstance(value, int | float) else value


def vote(samples: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The row that the majority vote of one example's ``samples`` gives (see the module docstring)."""
    voters: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in samples:
        value = _vote_value(row)
        if value is not None:
            voters[value].append(row)
    if not voters:
        return samples[0]

    def logprob(row: Mapping[str, Any]) -> float:
        value = row.get(LOGPROB)
        return float("-inf") if value is None else value

    winners = max(voters.values(), key=lambda rows: (len(rows), sum(map(logprob, rows))))
    return max(winners, key=logprob)


def voted_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per example: its vote's (:func:`vote`)."""
    return [vote(group) for group in by_example(rows)]


def oracle_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per example: sample 0 with each verdict of :data:`~finqa_dsl.core.metrics.CORRECT_FLAGS` true when
    any sample's is."""
    oracles = []
    for group in by_example(rows):
        oracle = dict(group[0])
        for key in m.CORRECT_FLAGS:
            if key in oracle:
                oracle[key] = any(row.get(key) for row in group)
        oracles.append(oracle)
    return oracles


def self_consistency_metrics(rows: list[Mapping[str, Any]],
                             summarize: Callable[[list[Mapping[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
    """The target's summary (``summarize``) of the greedy rows, plus, when the file holds several samples per
    example, ``num_samples`` and the ``voted_`` and ``oracle_`` accuracies."""
    greedy = summarize(greedy_rows(rows))
    samples = max((sample_of(row) for row in rows), default=0) + 1
    if samples == 1:
        return greedy
    voted, oracle = summarize(voted_rows(rows)), summarize(oracle_rows(rows))
    return {**greedy, m.NUM_SAMPLES: samples,
            **{m.VOTED + key: voted[key] for key in ACCURACY_KEYS if voted.get(key) is not None},
            **{m.ORACLE + key: oracle[key] for key in ACCURACY_KEYS if oracle.get(key) is not None}}
