"""FinQA JSON -> the PoT-distillation study's CSV -> examples: real data round-trips, dropped rows are named,
output is atomic."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from conftest import SAMPLE
from hypothesis import given, settings
from hypothesis import strategies as st

from finqa_dsl.core.data import DatasetError, load_examples
from finqa_dsl.core.finqa_csv import (
    COLUMNS,
    STUDY_COLUMNS,
    STUDY_TEACHER_COLUMNS,
    dumps_csv,
    parse_table,
    parse_text,
    read_csv_records,
    record_row,
    render_table,
    render_text,
)
from scripts import preprocess_finqa

REAL_SPLITS = ("train", "dev", "test", "dev_convfinqa_derived")
FIELDS = ("id", "question", "program", "exe_ans", "pre_text", "post_text", "table")


def same_fields(example) -> tuple:
    return tuple(getattr(example, name) for name in FIELDS)


@pytest.fixture(scope="module")
def real_csv_dir(real_finqa_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("csv")
    assert preprocess_finqa.main(["--input_dir", str(real_finqa_dir), "--output_dir", str(output),
                                  "--splits", *REAL_SPLITS]) == 0
    return output


def test_every_real_example_round_trips_through_the_csv(real_finqa_dir, real_csv_dir):
    total = 0
    for split in REAL_SPLITS:
        originals = load_examples(real_finqa_dir / f"{split}.json")
        read_back = load_examples(real_csv_dir / f"{split}.csv")
        assert [same_fields(e) for e in read_back] == [same_fields(e) for e in originals]
        # the study's answer rule: exe_ans when present (every real record has one)
        assert [e.answer for e in read_back] == [str(e.exe_ans) for e in originals]
        total += len(read_back)
    assert total == 1487
    # the one real escape: a Windows path in a sentence, its backslashes doubled in the cell
    test_rows = {row["id"]: row for row in csv.DictReader(io.StringIO(
        (real_csv_dir / "test.csv").read_bytes().decode("utf-8"), newline=""))}
    row = test_rows["STT/2006/page_95.pdf-3"]
    assert "serverprocess c:" + "\\" * 4 + "fc" in row["pre_text"] + row["post_text"]  # two in the JSON


def test_real_cells_are_the_study_rendering_and_need_quoting(real_finqa_dir, real_csv_dir):
    text = (real_csv_dir / "dev.csv").read_bytes().decode("utf-8")
    assert text.startswith(",".join(COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    records = {record["id"]: record for record in json.loads((real_finqa_dir / "dev.json").read_text())}
    first = records[rows[0]["id"]]
    assert rows[0]["pre_text"] == "\n".join(first["pre_text"])
    assert rows[0]["table"] == "\n".join("|".join(row) for row in first["table"])
    # the real cells that make quoting matter: sentences with pipes and quotes, multi-line cells
    with_pipe = [row for row in rows if "|" in row["pre_text"] + row["post_text"]]
    with_quote = [row for row in rows if '"' in row["pre_text"] + row["post_text"]]
    assert with_pipe and with_quote and all("\n" in row["table"] for row in rows[:50])
    for row in with_pipe + with_quote:
        original = records[row["id"]]
        assert parse_text(row["pre_text"]) == original["pre_text"]
        assert parse_text(row["post_text"]) == original["post_text"]
    assert '""' in text  # a quote inside a cell is doubled, as RFC 4180 says


def test_pandas_reads_the_same_cells(real_csv_dir):
    pandas = pytest.importorskip("pandas")
    path = real_csv_dir / "train.csv"
    frame = pandas.read_csv(path, keep_default_na=False, dtype=str)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(frame.columns) == list(COLUMNS)
    assert frame.to_dict("records") == rows


def test_empty_questions_and_answers_are_dropped_counted_and_named(real_finqa_dir, tmp_path, capsys):
    records = json.loads((real_finqa_dir / "train.json").read_text())[:6]
    records[1]["qa"]["question"] = "  "
    records[3]["qa"]["exe_ans"] = ""
    records[3]["qa"]["answer"] = ""
    records[4]["qa"].pop("exe_ans")  # no exe_ans: the answer falls back to qa.answer, kept
    source = tmp_path / "in"
    source.mkdir()
    (source / "train.json").write_text(json.dumps(records))
    assert preprocess_finqa.main(["--input_dir", str(source), "--output_dir", str(tmp_path / "out"),
                                  "--splits", "train"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"train: kept 4 rows -> {tmp_path / 'out' / 'train.csv'}; dropped 2 with an empty question "
                    f"or answer: {records[1]['id']}, {records[3]['id']}")
    rows = read_csv_records(tmp_path / "out" / "train.csv")
    assert [row["id"] for row in rows] == [records[i]["id"] for i in (0, 2, 4, 5)]
    kept_without_exe_ans = rows[2]["qa"]
    assert kept_without_exe_ans["answer"] == records[4]["qa"]["answer"] and kept_without_exe_ans["exe_ans"] is None
    with pytest.raises(DatasetError, match=rf"train.csv: record {records[4]['id']}: field 'qa.exe_ans'"):
        load_examples(tmp_path / "out" / "train.csv")


def test_a_bad_split_leaves_no_output_and_keeps_old_files(real_finqa_dir, tmp_path, capsys):
    source, output = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    output.mkdir()
    shutil.copy(real_finqa_dir / "train.json", source / "train.json")
    records = json.loads((real_finqa_dir / "dev.json").read_text())[:3]
    records[2]["table"] = "not a table"
    (source / "dev.json").write_text(json.dumps(records))
    (output / "dev.csv").write_text("old\n")
    assert preprocess_finqa.main(["--input_dir", str(source), "--output_dir", str(output),
                                  "--splits", "train", "dev"]) == 2
    error = capsys.readouterr().err
    assert error == (f"error: {source / 'dev.json'}: record {records[2]['id']}: field 'table': "
                     "a list of rows, each a list of strings\n")
    assert sorted(path.name for path in output.iterdir()) == ["dev.csv"]  # no train.csv, no temporary file
    assert (output / "dev.csv").read_text() == "old\n"


def test_a_missing_split_is_named(tmp_path, capsys):
    assert preprocess_finqa.main(["--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"error: no such FinQA split file: {tmp_path / 'train.json'}, "
                                       f"{tmp_path / 'dev.json'}, {tmp_path / 'test.json'}\n")
    assert not (tmp_path / "out").exists()


def test_csv_without_the_columns_or_with_a_short_row_is_named(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,question\nA,what?\n")
    with pytest.raises(DatasetError, match=r"x.csv: missing CSV column\(s\) pre_text, post_text, table, answer"):
        read_csv_records(path)
    path.write_text(",".join(COLUMNS) + "\nA,b,c\n")
    with pytest.raises(DatasetError, match=r"x.csv: line 2: expected 9 cells"):
        read_csv_records(path)


# Any text, with the separators, escapes and quotes the format must survive.
TEXT = st.text(alphabet=st.sampled_from('ab |\\\n\r",;$%()nr'), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=5).filter(lambda sentences: sentences != [""]))
def test_any_sentences_round_trip(sentences):
    assert parse_text(render_text(sentences)) == sentences


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(TEXT, min_size=1, max_size=4), max_size=4).filter(lambda table: table != [[""]]))
def test_any_table_round_trips(table):
    assert parse_table(render_table(table)) == table


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({column: TEXT for column in COLUMNS}), max_size=4))
def test_any_cells_round_trip_through_the_csv_layer(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    path.write_bytes(dumps_csv(rows).encode("utf-8"))
    with open(path, encoding="utf-8", newline="") as handle:
        assert list(csv.DictReader(handle)) == rows


# --- the study's own CSVs, read as they are -----------------------------------------------------------


def write_study_csv(path, examples, columns=STUDY_COLUMNS, programs=None):
    """A CSV with exactly the study's columns (its preprocess step's output), from ``examples``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for index, example in enumerate(examples):
        row = record_row(example.raw, index, "x")
        writer.writerow({**row, "program": (programs or {}).get(index, row["program"])})
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def test_the_studys_six_column_csv_loads_with_derived_ids_and_exe_ans_from_the_program(tmp_path):
    gold = load_examples(SAMPLE / "dev.json")[:12]
    path = write_study_csv(tmp_path / "dev.csv", gold)
    assert next(csv.reader(path.open())) == list(STUDY_COLUMNS)
    examples = load_examples(path)
    assert [e.id for e in examples] == [f"dev-{n}" for n in range(1, 13)]
    assert [e.exe_ans for e in examples] == [g.exe_ans for g in gold]
    assert [(e.question, e.program, e.table, e.pre_text) for e in examples] == [
        (g.question, g.program, g.table, g.pre_text) for g in gold]


def test_a_study_row_whose_program_does_not_execute_is_skipped_and_named_or_refused(tmp_path, caplog):
    gold = load_examples(SAMPLE / "dev.json")[:5]
    path = write_study_csv(tmp_path / "train.csv", gold, programs={1: "divide(1, 0)", 3: "add(1, "})
    with caplog.at_level("WARNING"):
        examples = load_examples(path)
    assert [e.id for e in examples] == ["train-1", "train-3", "train-5"]
    assert "skipped 2 of 5 rows whose program does not execute: row 2 (division_by_zero), row 4" in caplog.text
    with pytest.raises(DatasetError, match=r"train.csv: row 2 \(line \d+, id train-2\): field 'program': a program "
                                           r"that executes, got 'divide\(1, 0\)' \(division_by_zero\)"):
        load_examples(path, bad_program="refuse")


def test_the_studys_teacher_csv_loads_as_code_examples(tmp_path):
    path = tmp_path / "filtered.csv"
    prompt = ("###Passage\nshot passage\n###Question\nshot?\n###Python\nans = 0\n###End Python\n\n"
              "###Passage\nrevenue was 5 in 2019 .\nit was 4 in 2018 .\n###Question\nwhat was the change?\n"
              "###Hint\nA reference calculation: subtract(5, 4)\n###Python\n")
    rows = [{"prompt": prompt, "generated_code": "a = 5\nb = 4\nans = a - b", "actual_answer": "1.0",
             "expected_answer": "1.0"},
            {"prompt": "Is 5 more than 4?", "generated_code": "ans = 5 > 4", "actual_answer": "True",
             "expected_answer": "True"}]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=STUDY_TEACHER_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    first, second = load_examples(path)
    assert (first.id, first.question, first.pre_text, first.exe_ans) == (
        "filtered-1", "what was the change?", ("revenue was 5 in 2019 .", "it was 4 in 2018 ."), 1.0)
    assert first.program == "" and first.raw["generated_code"] == rows[0]["generated_code"]
    assert (second.question, second.pre_text, second.exe_ans) == ("Is 5 more than 4?", (), "yes")
    path.write_text("prompt,actual_answer,expected_answer\nq,1,1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="or a teacher CSV with prompt, generated_code"):
        load_examples(path)
