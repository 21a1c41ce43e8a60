"""scripts/compare_runs.py: run folders side by side, metric keys of an earlier version read as today's."""

from __future__ import annotations

import json

from finqa_dsl.core.metrics import ANSWER_ACCURACY_ABS_1E3, HEADLINE_METRICS, RENAMED_KEYS
from finqa_dsl.core.targets import get_target
from finqa_dsl.runs import files as run_files
from scripts import compare_runs


def run_folder(root, name, metrics):
    folder = root / name
    folder.mkdir()
    (folder / run_files.TEST_METRICS).write_text(json.dumps(metrics))
    return folder


def test_a_run_with_keys_of_an_earlier_version_compares_beside_a_new_one(tmp_path, capsys):
    old = run_folder(tmp_path, "old", {"n": 4, "execution_accuracy": 0.5, "answer_accuracy_seed_rule": 0.75})
    new = run_folder(tmp_path, "new", {"n": 4, "execution_accuracy": 0.25, ANSWER_ACCURACY_ABS_1E3: 0.5})
    assert compare_runs.main([str(old), str(new)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    column = HEADLINE_METRICS.index(ANSWER_ACCURACY_ABS_1E3) + 1
    assert header.split()[column] == ANSWER_ACCURACY_ABS_1E3 and "seed_rule" not in header
    assert [row.split()[column] for row in rows] == ["0.7500", "0.5000"]


def test_a_missing_metrics_file_is_one_message(tmp_path, capsys):
    assert compare_runs.main([str(tmp_path)]) == 2
    assert "no test metrics; was the run made with --do_test?" in capsys.readouterr().err


def test_resumed_rows_with_keys_of_an_earlier_version_are_summarized():
    """A predictions file an earlier version began, resumed by this one, mixes old and new row keys."""
    old_key = "answer_correct_seed_rule"
    row = {"execution_correct": True, "answer_correct_tolerant": True, "execution_error": None}
    rows = [{**row, old_key: True}, {**row, RENAMED_KEYS[old_key]: False}]
    summary = get_target("code").summarize(rows)
    assert (summary[RENAMED_KEYS[old_key]], summary[ANSWER_ACCURACY_ABS_1E3]) == (1, 0.5)
