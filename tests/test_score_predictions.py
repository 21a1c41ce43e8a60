"""scripts/score_predictions.py: joins, target fields, and clear messages with exit 2 for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def script():
    from scripts import score_predictions

    return score_predictions


def record(example_id: str, program: str, exe_ans, answer: str | None) -> dict:
    qa = {"question": "what is it?", "program": program, "exe_ans": exe_ans}
    if answer is not None:
        qa["answer"] = answer
    return {"id": example_id, "pre_text": ["a sentence ."], "post_text": [],
            "table": [["", "2019", "2018"], ["revenue", "$ 1,200", "$ 1,000"]], "qa": qa}


@pytest.fixture
def gold_file(tmp_path) -> Path:
    path = tmp_path / "gold.json"
    path.write_text(json.dumps([
        record("A/2019/page_1.pdf-1", "subtract(1200, 1000), divide(#0, 1000)", 0.2, "20%"),
        record("B/2019/page_2.pdf-1", "table_max(revenue, none)", 1200.0, None),
        record("C/2019/page_3.pdf-1", "greater(1200, 1000)", "yes", "yes"),
    ]))
    return path


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def run(script, capsys, *argv) -> tuple[int, dict | None, str]:
    code = script.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_scores_program_predictions_and_counts_left_out_ids(script, capsys, gold_file, tmp_path):
    predictions = write_lines(tmp_path / "p.jsonl", [
        {"id": "A/2019/page_1.pdf-1", "prediction": "subtract(1200, 1000), divide(#0, 1000)<end_of_turn>"},
        {"id": "B/2019/page_2.pdf-1", "prediction": "table_max(revenue, none)"},
        {"id": "C/2019/page_3.pdf-1", "prediction": "greater(1000, 1200)"},
        {"id": "Z/2019/page_9.pdf-1", "prediction": "add(1, 2)"},
        "",
    ])
    code, summary, _ = run(script, capsys, predictions, "--gold", gold_file)
    assert code == 0
    assert summary["target_field"] == "program"
    assert (summary["n"], summary["n_left_out"]) == (3, 1)
    assert (summary["execution_correct"], summary["program_correct"]) == (2, 2)
    assert summary["execution_accuracy"] == pytest.approx(2 / 3)


def test_answer_targets_report_strict_and_tolerant(script, capsys, gold_file, tmp_path):
    predictions = write_lines(tmp_path / "p.jsonl", [
        {"id": "A/2019/page_1.pdf-1", "output": "0.2", "target_field": "numerical"},
        {"id": "B/2019/page_2.pdf-1", "output": "1,200.0", "target_field": "numerical"},
        {"id": "C/2019/page_3.pdf-1", "output": "Yes", "target_field": "numerical"},
    ])
    code, summary, _ = run(script, capsys, predictions, "--gold", gold_file, "--prediction_field", "output")
    assert code == 0 and summary["target_field"] == "numerical"  # taken from the lines
    assert (summary["answer_correct_strict"], summary["answer_correct_tolerant"]) == (1, 3)
    assert summary["program_accuracy"] is None
    code, summary, _ = run(script, capsys, predictions, "--gold", gold_file, "--prediction_field", "output",
                           "--target_field", "answer")
    assert code == 0
    assert (summary["n"], summary["n_missing_gold"]) == (2, 1)  # B has no qa.answer
    assert (summary["answer_correct_strict"], summary["answer_correct_tolerant"]) == (0, 2)  # 0.2 ~ "20%"


@pytest.mark.parametrize(("lines", "message"), [
    (["{not json"], "p.jsonl: line 1: invalid JSON"),
    (["[1, 2]"], "p.jsonl: line 1: expected a JSON object"),
    (["", {"prediction": "add(1, 2)"}], "p.jsonl: line 2: field 'id': expected a non-empty string"),
    ([{"id": "A", "text": "add(1, 2)"}], "line 1 (id A): field 'prediction': expected a string"),
    ([{"id": "A", "prediction": None}], "field 'prediction'"),
    ([{"id": "A", "generation": "add(1, 2)"}, {"id": "B", "prediction": "add(1, 2)"}],
     "line 2 (id B): field 'generation': expected a string"),
    ([{"id": "A", "generation": "x", "target_field": "program"}, {"id": "B", "generation": "1", "target_field":
      "numerical"}], "field 'target_field' differs between rows"),
])
def test_bad_prediction_files_end_with_a_clear_message(script, capsys, gold_file, tmp_path, lines, message):
    predictions = write_lines(tmp_path / "p.jsonl", lines)
    code, _, err = run(script, capsys, predictions, "--gold", gold_file)
    assert code == 2
    assert message in err


def test_missing_files_and_bad_gold_end_with_exit_2(script, capsys, gold_file, tmp_path):
    predictions = write_lines(tmp_path / "p.jsonl", [{"id": "A", "prediction": "add(1, 2)"}])
    code, _, err = run(script, capsys, tmp_path / "absent.jsonl", "--gold", gold_file)
    assert code == 2 and "absent.jsonl" in err
    bad_gold = tmp_path / "bad_gold.json"
    bad_gold.write_text(json.dumps([{"id": "X", "qa": {"question": "q", "program": "add(1, 2)"},
                                     "pre_text": [], "post_text": [], "table": []}]))
    code, _, err = run(script, capsys, predictions, "--gold", bad_gold)
    assert code == 2
    assert "bad_gold.json" in err and "record X" in err and "exe_ans" in err


def test_non_utf8_line_is_one_clear_message(script, capsys, gold_file, tmp_path):
    predictions = tmp_path / "p.jsonl"
    bad_line = b'{"id": "B/2019/page_2.pdf-1", "generation": "caf\xe9"}'
    predictions.write_bytes(b'{"id": "A/2019/page_1.pdf-1", "generation": "add(1, 2)"}\n' + bad_line + b"\n")
    code, _, err = run(script, capsys, predictions, "--gold", gold_file)
    assert code == 2
    column = bad_line.index(b"\xe9") + 1
    assert err.strip().splitlines() == [f"error: {predictions}: line 2: not UTF-8 (byte 0xe9 at column {column})"]


def test_the_driver_format_is_read_and_duplicate_ids_are_scored_and_counted(script, capsys, gold_file, tmp_path):
    a = {"id": "A/2019/page_1.pdf-1", "generation": "subtract(1200, 1000), divide(#0, 1000)"}
    predictions = write_lines(tmp_path / "p.jsonl", [a, {"id": "B/2019/page_2.pdf-1", "generation": "add(1, 2)"},
                                                     a, a])
    code, summary, err = run(script, capsys, predictions, "--gold", gold_file)
    assert code == 0 and summary["prediction_field"] == "generation"
    assert (summary["n"], summary["execution_correct"], summary["n_duplicate_ids"]) == (4, 3, 2)
    assert "2 line(s) repeat an earlier line's id" in err


def test_the_gold_defaults_to_the_run_folders_test_file(script, capsys, gold_file, tmp_path, monkeypatch):
    folder = tmp_path / "__output__" / "run"
    folder.mkdir(parents=True)
    (folder / "args.json").write_text(json.dumps({"test_file": gold_file.name}))  # relative to the run's cwd
    predictions = write_lines(folder / "test_predictions.jsonl",
                              [{"id": "C/2019/page_3.pdf-1", "generation": "yes", "target_field": "answer"}])
    monkeypatch.chdir(folder)  # not where the run started: found from the folder above __output__
    code, summary, _ = run(script, capsys, predictions)
    assert code == 0 and summary["gold_file"].endswith("gold.json")
    assert (summary["target_field"], summary["answer_correct_strict"]) == ("answer", 1)
    (folder / "args.json").write_text(json.dumps({"test_file": "elsewhere.json"}))
    code, _, err = run(script, capsys, predictions)
    assert code == 2 and "test_file elsewhere.json is not found from here or from the run's folder: pass --gold" in err
    outside = write_lines(tmp_path / "p.jsonl", [{"id": "C/2019/page_3.pdf-1", "generation": "yes"}])
    code, _, err = run(script, capsys, outside)
    assert code == 2 and "no args.json with a test_file: not a run folder of the driver: pass --gold" in err


def test_a_predictions_file_with_keys_of_an_earlier_version_still_scores(script, capsys, gold_file, tmp_path):
    """Rows that an earlier version scored carry ``answer_correct_seed_rule``; rescoring reports today's key."""
    rows = [{"id": "A/2019/page_1.pdf-1", "generation": "ans = 200 / 1000", "target_field": "code",
             "answer_correct_seed_rule": True},
            {"id": "C/2019/page_3.pdf-1", "generation": "ans = 1200 > 1000", "target_field": "code",
             "answer_correct_seed_rule": True}]
    code, summary, _ = run(script, capsys, write_lines(tmp_path / "old.jsonl", rows), "--gold", gold_file)
    assert code == 0 and summary["target_field"] == "code"
    assert (summary["answer_correct_abs_1e3"], summary["answer_accuracy_abs_1e3"]) == (2, 1.0)
    assert not any("seed_rule" in key for key in summary)
