"""scripts/report.py on real driver runs: two parrot models (each writes one fixed program) on sample examples
whose gold answers are set so that each run gets a known set right; every number of the report is counted
again here, from the gold file and the sets, and the classifiers of finqa_dsl.core.example_kinds are checked on
examples written for each rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import SAMPLE
from test_bad_input import parrot_model

from finqa_dsl.core import example_kinds as kinds
from finqa_dsl.core.data import Example
from finqa_dsl.core.dsl import OPERATIONS
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs import report as run_report
from scripts import finetune as driver
from scripts import report as report_script

N = 12
A_TEXT, A_VALUE = "divide(18, 4)", 4.5
B_TEXT, B_VALUE = "subtract(18, 4)", 14.0
A_RIGHT = {0, 3, 6, 9, 10}  # record indices whose exe_ans is what run a writes
B_RIGHT = {1, 4, 7}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _records() -> list[dict]:
    records = json.loads((SAMPLE / "test.json").read_text())[:N]
    for index, record in enumerate(records):
        if index in A_RIGHT:
            record["qa"]["exe_ans"] = A_VALUE
        elif index in B_RIGHT:
            record["qa"]["exe_ans"] = B_VALUE
    return records


def _run(root: Path, name: str, text: str) -> Path:
    model = parrot_model(root / f"parrot-{name}", text)
    assert driver.main(["--model_name", str(model), "--test_file", "test.json", "--target_field", "program",
                        "--do_test", "--generation_max_new_tokens", "16", "--report_to", "none",
                        "--output_folder", name]) == 0
    return root / "__output__" / name


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, list[dict], Path, Path]:
    root = tmp_path_factory.mktemp("report")
    records = _records()
    (root / "test.json").write_text(json.dumps(records))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return root, records, _run(root, "a", A_TEXT), _run(root, "b", B_TEXT)


def _fraction(right: int, n: int) -> str:
    return f"{right}/{n} = {100 * right / n:.1f}%"


def _expected_groups(records: list[dict], groups_of) -> dict[str, dict[str, dict[str, int]]]:
    """group -> run -> right/n, counted from the records and the sets the runs get right."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for index, record in enumerate(records):
        for group in groups_of(record):
            for run, right in (("a", A_RIGHT), ("b", B_RIGHT)):
                cell = table.setdefault(group, {}).setdefault(run, {"right": 0, "n": 0})
                cell["n"] += 1
                cell["right"] += index in right
    return table


def _steps(record: dict) -> list[str]:
    count = len(re.findall(r"[a-z_]+\(", record["qa"]["program"]))
    return ["5+" if count >= 5 else str(count)]


def _operations(record: dict) -> set[str]:
    return set(re.findall(r"([a-z_]+)\(", record["qa"]["program"]))


def _evidence(record: dict) -> list[str]:
    where = {key.split("_")[0] for key in record["qa"].get("gold_inds") or {}}
    return [{frozenset({"table"}): "table only", frozenset({"text"}): "text only",
             frozenset({"table", "text"}): "table and text"}.get(frozenset(where), "no gold evidence")]


def test_the_report_counts_what_each_run_got_right_by_every_grouping(two_runs, capsys):
    root, records, a, b = two_runs
    out = root / "out"
    assert report_script.main([str(a), str(b), "--output_dir", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    report = json.loads((out / "report.json").read_text())
    by_label = {run["label"]: run for run in report["runs"]}
    assert {label: (run["right"], run["n"], run["correct_flag"], run["target_field"])
            for label, run in by_label.items()} == {"a": (len(A_RIGHT), N, "execution_correct", "program"),
                                                   "b": (len(B_RIGHT), N, "execution_correct", "program")}
    breakdowns = report["breakdowns"]
    assert breakdowns["steps"] == _expected_groups(records, _steps)
    assert breakdowns["evidence"] == _expected_groups(records, _evidence)
    operations = breakdowns["operation"]
    assert {group: cells for group, cells in operations.items()} == _expected_groups(records, _operations)
    assert list(operations) == [op for op in OPERATIONS if op in operations]  # the DSL's order
    examples = {record["id"]: record for record in records}
    types = _expected_groups(records, lambda record: [kinds.question_type(_example(record))])
    assert breakdowns["question_type"] == types
    assert sum(cells["a"]["n"] for cells in types.values()) == N
    # Failure reasons: run a writes a well-formed program, so every miss is a wrong value.
    assert report["failure_reasons"] == {
        "(right)": {"a": {"count": len(A_RIGHT), "n": N}, "b": {"count": len(B_RIGHT), "n": N}},
        "wrong_value": {"a": {"count": N - len(A_RIGHT), "n": N}, "b": {"count": N - len(B_RIGHT), "n": N}}}

    # Side by side: exactly the ids one run gets right and the other misses, with each run's prediction.
    ids = [record["id"] for record in records]
    pairs = {(pair["right"], pair["missed"]): pair["examples"] for pair in report["differences"]}
    assert [example["id"] for example in pairs["a", "b"]] == [ids[i] for i in sorted(A_RIGHT)]
    assert [example["id"] for example in pairs["b", "a"]] == [ids[i] for i in sorted(B_RIGHT)]
    assert all(example["parsed_predictions"] == {"a": A_TEXT, "b": B_TEXT} for example in pairs["a", "b"])
    assert all(example["question"] == examples[example["id"]]["qa"]["question"] for example in pairs["a", "b"])

    markdown = (out / "report.md").read_text()
    assert "| a | program | `execution_correct` |" in markdown
    assert _fraction(len(A_RIGHT), N) in markdown and _fraction(len(B_RIGHT), N) in markdown
    for group, cells in breakdowns["steps"].items():
        assert f"| {group} | {_fraction(**cells['a'])} | {_fraction(**cells['b'])} |" in markdown
    assert f"## Right in a, missed by b: {len(A_RIGHT)}" in markdown
    assert f"## Right in b, missed by a: {len(B_RIGHT)}" in markdown
    for i in A_RIGHT:
        assert f"| {ids[i]} | " in markdown
    for chart in [breakdown.chart for breakdown in run_report.BREAKDOWNS] + [run_report.FAILURE_CHART]:
        data = (out / chart).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, chart
        assert f"]({chart})" in markdown
    assert not list(out.glob(".*")), "no temporary files left behind"


def test_one_run_reports_into_its_folder_without_differences(two_runs, capsys):
    _, _, a, _ = two_runs
    assert report_script.main([str(a)]) == 0
    report = json.loads((a / "report" / "report.json").read_text())
    assert [run["label"] for run in report["runs"]] == ["a"] and report["differences"] == []
    assert "## Right in" not in (a / "report" / "report.md").read_text()
    # Another flag: program accuracy (the parrot's program is never the gold one).
    assert report_script.main([str(a), "--correct_field", "program_correct", "--output_dir",
                               str(a / "by_program")]) == 0
    assert json.loads((a / "by_program" / "report.json").read_text())["runs"][0]["right"] == 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda folder: None, "test_predictions.jsonl: no test predictions; was the run made with --do_test?"),
    (lambda folder: (folder / run_files.TEST_PREDICTIONS).write_text(""), "test_predictions.jsonl: holds no"),
    (lambda folder: (folder / run_files.TEST_PREDICTIONS).write_text('{"id": "x", "generation": "add(1, 2)"}\n'),
     "rows carry no target_field"),
])
def test_a_folder_without_scored_predictions_is_one_error_line_and_exit_2(tmp_path, capsys, make, message):
    folder = tmp_path / "run"
    folder.mkdir()
    make(folder)
    assert report_script.main([str(folder)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error, error
    assert not (folder / "report").exists()


def test_a_flag_the_target_does_not_score_is_refused(two_runs, capsys):
    _, _, a, _ = two_runs
    assert report_script.main([str(a), "--correct_field", "answer_correct_strict"]) == 2
    assert "program predictions are not scored by answer_correct_strict" in capsys.readouterr().err


def _example(record: dict) -> Example:
    qa = record["qa"]
    return Example(id=record["id"], question=qa["question"], program=qa["program"], exe_ans=qa["exe_ans"],
                   answer=None, pre_text=(), post_text=(), table=(), gold_inds=qa.get("gold_inds"), raw=record)


def _made(question: str, program: str, exe_ans: float | str = 1.0, gold_inds: dict | None = None) -> Example:
    return _example({"id": "x", "qa": {"question": question, "program": program, "exe_ans": exe_ans,
                                       "gold_inds": gold_inds}})


@pytest.mark.parametrize(("question", "program", "exe_ans", "expected"), [
    ("was revenue greater in 2012 than in 2013?", "greater(26.6%, 24.9%)", "yes", kinds.YES_NO_COMPARISON),
    ("did revenue exceed costs?", "subtract(5, 3), greater(#0, const_1)", "yes", kinds.YES_NO_COMPARISON),
    ("what was the growth rate of net revenues?", "subtract(1338, 1299), divide(#0, 1299)", 0.03,
     kinds.PERCENTAGE_CHANGE),
    ("what percent lower is the carrying value?", "divide(5687, 6275), subtract(const_1, #0)", 0.09,
     kinds.PERCENTAGE_CHANGE),
    ("what was the percentage increase in cash?", "divide(3277, 2880)", 1.13, kinds.PERCENTAGE_CHANGE),
    ("what is the change in sales, in percent?", "subtract(12, 10), divide(#0, 10), multiply(#1, const_100)",
     20.0, kinds.PERCENTAGE_CHANGE),
    ("what is the sum of a and b?", "add(3423.1, 4925.0)", 8348.1, kinds.SUM_AVERAGE),
    ("what was the average cloud revenue?", "table_average(cloud services, none)", 5.0, kinds.SUM_AVERAGE),
    ("what was the average of a and b?", "add(32, 38), divide(#0, const_2)", 35.0, kinds.SUM_AVERAGE),
    ("what portion of the total is goodwill?", "divide(2715, 4932)", 0.55, kinds.RATIO),
    ("what percentage of debt matured?", "divide(750, 500), multiply(#0, const_100)", 150.0, kinds.RATIO),
    ("how much higher was the peak than the average?",
     "table_average(x, none), table_max(x, none), subtract(#1, #0)", 3.0, kinds.DIFFERENCE),
    ("what is the total fair value?", "multiply(561, 44)", 24684.0, kinds.OTHER),
    ("what was the highest margin?", "table_max(operating margin, none)", 0.14, kinds.OTHER),
    ("what is this?", "not a program", 1.0, kinds.OTHER),
])
def test_question_types_follow_the_documented_rules(question, program, exe_ans, expected):
    assert kinds.question_type(_made(question, program, exe_ans)) == expected


@pytest.mark.parametrize(("program", "steps", "operations"), [
    ("subtract(1338, 1299), divide(#0, 1299)", "2", ("subtract", "divide")),
    ("add(1, 2), add(#0, 3), add(#1, 4), add(#2, 5), divide(#3, const_5)", "5+", ("add", "divide")),
    ("table_max(total revenues, none)", "1", ("table_max",)),
    ("oops", "unparsable", ()),
])
def test_steps_and_operations_come_from_the_gold_program(program, steps, operations):
    example = _made("q", program)
    assert (kinds.step_count_group(example), kinds.gold_operations(example)) == (steps, operations)


@pytest.mark.parametrize(("gold_inds", "expected"), [
    ({"table_1": "a", "table_2": "b"}, kinds.TABLE_ONLY), ({"text_0": "a"}, kinds.TEXT_ONLY),
    ({"text_3": "a", "table_1": "b"}, kinds.TABLE_AND_TEXT), ({}, kinds.NO_EVIDENCE), (None, kinds.NO_EVIDENCE),
])
def test_the_evidence_kind_comes_from_the_gold_inds_keys(gold_inds, expected):
    assert kinds.evidence_kind(_made("q", "add(1, 2)", gold_inds=gold_inds)) == expected


def test_run_as_a_user_runs_it(two_runs, tmp_path):
    """``python scripts/report.py`` in a fresh process: a run folder gives its report, an empty folder one line
    on stderr and exit code 2."""
    import subprocess
    import sys

    from finqa_dsl.locations import REPO_ROOT

    _, _, a, b = two_runs
    script = str(REPO_ROOT / "scripts" / "report.py")
    done = subprocess.run([sys.executable, script, str(a), str(b)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == a.parent / "report--a--b" / run_report.REPORT_MARKDOWN
    failed = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1, failed.stderr
    assert failed.stderr.startswith(f"error: {tmp_path / run_files.TEST_PREDICTIONS}: no test predictions")


def test_rows_outside_the_test_file_and_examples_without_a_row_are_counted_not_grouped(two_runs, tmp_path):
    import shutil

    root, records, a, _ = two_runs
    partial = tmp_path / "__output__" / "partial"
    shutil.copytree(a, partial, ignore=shutil.ignore_patterns("report*", "by_program"))
    lines = (partial / run_files.TEST_PREDICTIONS).read_text().splitlines()
    stranger = json.loads(lines[0]) | {"id": "not/in/the/test/file"}
    (partial / run_files.TEST_PREDICTIONS).write_text("\n".join([*lines[2:], json.dumps(stranger)]) + "\n")
    args = json.loads((partial / run_files.ARGS).read_text())
    (partial / run_files.ARGS).write_text(json.dumps(args | {"test_file": str(root / "test.json")}))
    run = run_report.load_run(partial)
    assert (len(run.rows), run.n_left_out, run.n_not_predicted) == (N - 2, 1, 2)
    report = run_report.build_report([run])
    assert report["runs"][0]["right"] == len(A_RIGHT - {0, 1})
    assert sum(cells["partial"]["n"] for cells in report["breakdowns"]["evidence"].values()) == N - 2
