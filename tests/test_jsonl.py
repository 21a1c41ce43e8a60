"""core.io JSON lines after a crash: a complete last line keeps its data, a torn one is cut, a corrupt one is named."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from finqa_dsl.core.errors import CorruptFileError
from finqa_dsl.core.io import JsonlAppender, ResumableJsonl, read_jsonl_lines, read_jsonl_tolerant


def test_a_complete_last_line_without_its_newline_is_kept_and_mended(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')  # the crash came between the line and its newline
    assert [row["id"] for row in read_jsonl_tolerant(path)] == ["a", "b"]
    with JsonlAppender(path) as appender:
        appender.write({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'


def test_a_torn_last_line_is_skipped_and_cut(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "text": "caf\xc3')  # torn inside a UTF-8 character
    assert read_jsonl_tolerant(path) == [{"id": "a"}]
    with pytest.raises(CorruptFileError, match=r"rows.jsonl: line 2: not UTF-8"):
        read_jsonl_lines(path)
    with JsonlAppender(path) as appender:
        appender.write({"id": "b"})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"id": "a"}, {"id": "b"}]


@pytest.mark.parametrize(("content", "message"), [
    (b'{"id": "a"}\n{"id": \n{"id": "c"}\n', r"rows.jsonl: line 2: invalid JSON at column 8 \(Expecting value\)"),
    (b'{"id": "a"}\n{"id": "b"\n', r"rows.jsonl: line 2: invalid JSON"),  # it has its newline: not torn
    (b'{"id": "a"}\n{"id": "\xff"}\n{"id": "c"}', r"rows.jsonl: line 2: not UTF-8 \(byte 0xff at column 9\)"),
])
def test_a_corrupt_line_that_is_not_a_torn_tail_is_an_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError, match=message):
        read_jsonl_tolerant(path)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('\n{"id": "a"}\n\n{"id": "b"}\n')
    assert read_jsonl_lines(path) == [(2, {"id": "a"}), (4, {"id": "b"})]
    assert read_jsonl_tolerant(tmp_path / "absent.jsonl") == []


def test_a_resumable_file_knows_its_finished_ids_and_keeps_one_row_per_id(tmp_path):
    """Teacher rows: a failed row is not finished (a rerun retries it), its retry replaces it, and a later failure
    never hides an earlier good row. A torn last line is no row, and appending mends it first."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "a", "error": null}\n{"id": "b", "error": "timeout"}\n{"id": "c", "err')
    stream = ResumableJsonl(path, good=lambda row: row["error"] is None)
    assert stream.finished_ids() == {"a"}
    items = [SimpleNamespace(id=i) for i in "abcd"]
    assert [item.id for item in stream.pending(items)] == ["b", "c", "d"]
    with stream.appender() as appender:
        for row in ({"id": "b", "error": None}, {"id": "a", "error": "timeout"}, {"id": "d", "error": "timeout"}):
            appender.write(row)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "b", "a", "d"]
    assert stream.finished_ids() == {"a", "b"}
    assert stream.kept_rows() == {"a": {"id": "a", "error": None}, "b": {"id": "b", "error": None},
                                  "d": {"id": "d", "error": "timeout"}}
    assert [item.id for item in stream.pending(items, id_of=lambda item: item.id)] == ["c", "d"]


def test_a_resumable_file_reads_its_siblings_and_writes_only_its_own(tmp_path):
    """Test predictions under two processes: each appends to its shard, and every shard counts as finished."""
    main, shard = tmp_path / "p.jsonl", tmp_path / "p.rank1-of-2.jsonl"
    main.write_text('{"key": "x", "v": 1}\n')
    shard.write_text('{"key": "x", "v": 2}\n{"key": "y", "v": 3}\n')
    stream = ResumableJsonl(tmp_path / "p.rank0-of-2.jsonl", also_read=[main, shard, main], key="key")
    assert stream.sources == (tmp_path / "p.rank0-of-2.jsonl", main, shard)
    assert stream.finished_ids() == {"x", "y"}
    assert stream.kept_rows() == {"x": {"key": "x", "v": 1}, "y": {"key": "y", "v": 3}}  # every row good: first
    with stream.appender() as appender:
        appender.write({"key": "z"})
    assert stream.finished_ids() == {"x", "y", "z"} and main.read_text() == '{"key": "x", "v": 1}\n'
    assert ResumableJsonl(tmp_path / "absent.jsonl").finished_ids() == set()
