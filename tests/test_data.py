"""finqa_dsl.core.data on the real FinQA files and on real records broken one field at a time."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import pytest

from finqa_dsl.core.data import DatasetError, Example, load_examples


@pytest.fixture(scope="module")
def real_records(real_finqa_dir) -> list[dict]:
    return json.loads((real_finqa_dir / "train.json").read_text(encoding="utf-8"))


def raises_starting(path, message: str, whole: bool = False):
    """``pytest.raises(DatasetError)`` whose message is ``"<path>: <message>..."`` (exactly, with whole)."""
    return pytest.raises(DatasetError, match=f"^{re.escape(f'{path}: {message}')}{'$' if whole else ''}")


def test_loads_every_real_split(real_finqa_dir):
    counts = {name: len(load_examples(real_finqa_dir / f"{name}.json"))
              for name in ("train", "dev", "test", "dev_convfinqa_derived")}
    assert counts == {"train": 118, "dev": 457, "test": 770, "dev_convfinqa_derived": 142}


def test_reduced_test_records_have_no_gold_inds_or_answer(real_finqa_dir):
    test = load_examples(real_finqa_dir / "test.json")
    reduced = [example for example in test if example.gold_inds is None]
    assert len(reduced) == 261
    assert all(example.answer is None for example in reduced)
    assert all(example.gold_inds and example.answer is not None for example in test if example not in reduced)


def test_record_fields_are_typed_and_unknown_fields_kept(real_finqa_dir, real_records):
    example = load_examples(real_finqa_dir / "train.json")[0]
    record = real_records[0]
    assert example.id == record["id"] == "AAL/2018/page_13.pdf-2"
    assert example.question == record["qa"]["question"]
    assert example.program == "divide(9896, 23.6%)"
    assert example.exe_ans == 41932.20339
    assert example.answer == "41932"
    assert example.table[1] == ("2018", "4447", "$ 2.23", "$ 9896", "23.6% ( 23.6 % )")
    assert isinstance(example.pre_text, tuple) and isinstance(example.table[0], tuple)
    assert example.gold_inds == record["qa"]["gold_inds"]
    assert example.raw["table_ori"][1][3] == "$9,896"  # unknown fields kept as they were
    assert example.raw["qa"]["tfidftopn"] == record["qa"]["tfidftopn"]
    assert example.source == str(real_finqa_dir / "train.json")
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.id = "other"


def test_exe_ans_is_a_float_or_yes_no(real_finqa_dir):
    values = [example.exe_ans for name in ("train", "dev", "test")
              for example in load_examples(real_finqa_dir / f"{name}.json")]
    assert {value for value in values if isinstance(value, str)} == {"yes", "no"}
    assert all(isinstance(value, float) for value in values if not isinstance(value, str))


def test_jsonl_gives_the_same_examples(real_finqa_dir, real_records, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in real_records) + "\n", encoding="utf-8")
    assert load_examples(path) == load_examples(real_finqa_dir / "train.json")


_DELETE = object()


def _set(path: str, value):
    def mutate(record: dict) -> None:
        *parents, last = path.split(".")
        target = record
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return mutate


BROKEN = [  # (mutation, field named in the message, words of what was expected)
    (_set("qa.question", _DELETE), "qa.question", "non-empty string"),
    (_set("qa.question", ""), "qa.question", "non-empty string"),
    (_set("qa.program", ["divide", "9896"]), "qa.program", "non-empty string"),
    (_set("qa.exe_ans", _DELETE), "qa.exe_ans", "finite number or 'yes'/'no'"),
    (_set("qa.exe_ans", "maybe"), "qa.exe_ans", "finite number or 'yes'/'no'"),
    (_set("qa.exe_ans", True), "qa.exe_ans", "finite number or 'yes'/'no'"),
    (_set("qa.answer", 41932), "qa.answer", "a string when present"),
    (_set("qa", "divide(9896, 23.6%)"), "qa", "an object"),
    (_set("pre_text", "one sentence"), "pre_text", "a list of strings"),
    (_set("post_text", ["fine", 3]), "post_text", "a list of strings"),
    (_set("table", _DELETE), "table", "a list of rows"),
    (_set("table", [["year", "gallons"], "2018 4447"]), "table", "row 1 is not"),
    (_set("table", [["year", "gallons"], ["2018", 4447]]), "table", "row 1 is not"),
    (_set("qa.gold_inds", ["table_1"]), "qa.gold_inds", "an object"),
    (_set("qa.gold_inds", {"row_1": "x"}), "qa.gold_inds", "'row_1'"),
    (_set("qa.gold_inds", {"table_9": "x"}), "qa.gold_inds", "within the record's 4 table entries"),
    (_set("qa.gold_inds", {"text_99": "x"}), "qa.gold_inds", "within the record's 19 text entries"),
]


@pytest.mark.parametrize(("mutate", "field", "expected"), BROKEN, ids=[case[1] for case in BROKEN])
def test_malformed_record_names_file_id_and_field(real_records, tmp_path, mutate, field, expected):
    records = copy.deepcopy(real_records[:3])
    mutate(records[0])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DatasetError) as error:
        load_examples(path)
    message = str(error.value)
    assert message.startswith(f"{path}: record AAL/2018/page_13.pdf-2: field '{field}': ")
    assert expected in message


@pytest.mark.parametrize("bad_id", [_DELETE, 17, ""])
def test_a_bad_id_is_named_by_index(real_records, tmp_path, bad_id):
    records = copy.deepcopy(real_records[:3])
    _set("id", bad_id)(records[2])
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    with raises_starting(path, "record #2: field 'id': a non-empty string", whole=True):
        load_examples(path)


def test_duplicate_ids_are_an_error(real_records, tmp_path):
    path = tmp_path / "dup.json"
    path.write_text(json.dumps([real_records[0], real_records[1], real_records[0]]), encoding="utf-8")
    with pytest.raises(DatasetError) as error:
        load_examples(path)
    assert str(error.value) == (f"{path}: record AAL/2018/page_13.pdf-2: field 'id': "
                                "a unique id, but record #0 has it too")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('[{"id": "A/2018/page_1.pdf-1",\n "qa": ', encoding="utf-8")
    with raises_starting(path, "invalid JSON at line 2"):
        load_examples(path)


def test_invalid_jsonl_names_file_and_line(real_records, tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text(f"{json.dumps(real_records[0])}\n{json.dumps(real_records[1])[:50]}\n", encoding="utf-8")
    with raises_starting(path, "line 2: invalid JSON"):
        load_examples(path)


def test_json_that_is_not_a_list_is_an_error(real_records, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(real_records[0]), encoding="utf-8")
    with raises_starting(path, "expected a JSON list of FinQA records, got dict"):
        load_examples(path)


def test_a_record_that_is_not_an_object_is_named_by_index(real_records, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([real_records[0], ["not", "a", "record"]]), encoding="utf-8")
    with raises_starting(path, "record #1: expected a JSON object, got list"):
        load_examples(path)


def test_example_is_constructible_without_a_file():
    example = Example(id="X/2020/page_1.pdf-1", question="q", program="add(1, 2)", exe_ans=3.0, answer=None,
                      pre_text=(), post_text=(), table=(), gold_inds=None, raw={})
    assert example.source is None
