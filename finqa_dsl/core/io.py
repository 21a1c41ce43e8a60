"""File output that never leaves a half-written file behind, and JSON Lines that a run streams to and resumes
from (:class:`ResumableJsonl`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from finqa_dsl.core.errors import CorruptFileError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename (mode as umask allows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (UTF-8, trailing newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write ``rows`` as JSON Lines atomically."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


class JsonlAppender:
    """Append JSON lines one at a time, flushed and fsynced, so a crash keeps every finished line.

    An earlier crash may have left the last line without its newline: a complete line (valid JSON) gets its
    newline back, a torn one is cut off, before appending.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _mend_last_line(self.path)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held open until close())

    def write(self, row: dict) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mend_last_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:
        if _is_json(data[start:]):
            handle.seek(len(data))
            handle.write(b"\n")
        else:
            handle.truncate(start)


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def read_jsonl_lines(path: str | os.PathLike, *, torn_tail_ok: bool = False) -> list[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of ``path``.

    A line that is not UTF-8 or not JSON raises :class:`CorruptFileError` naming the file and line, except,
    with ``torn_tail_ok``, a last line without its newline (a write a crash interrupted), which is skipped.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    values = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line.decode("utf-8"))))
        except UnicodeDecodeError as error:
            if torn_tail_ok and number == len(lines):
                break
            raise CorruptFileError(f"{path}: line {number}: not UTF-8 (byte {line[error.start]:#04x} at column "
                                   f"{error.start + 1})") from None
        except json.JSONDecodeError as error:
            if torn_tail_ok and number == len(lines):
                break
            raise CorruptFileError(f"{path}: line {number}: invalid JSON at column {error.colno} ({error.msg})"
                                   ) from None
    return values


def read_jsonl_tolerant(path: str | os.PathLike) -> list[dict]:
    """The JSON lines of ``path`` ([] when it does not exist), skipping a last line that a crash left torn
    (see :func:`read_jsonl_lines`); any other bad line raises :class:`CorruptFileError`."""
    path = Path(path)
    if not path.exists():
        return []
    return [value for _, value in read_jsonl_lines(path, torn_tail_ok=True)]


class ResumableJsonl:
    """Rows streamed to a JSON Lines file as they finish, one flushed line each, and resumed from after a crash.

    ``path`` is where new rows are appended (:class:`JsonlAppender`: a torn last line is mended first);
    ``also_read`` are files of the same run read with it (e.g. other processes' shards). A row is keyed by its
    ``key`` field (or by what ``key(row)`` gives); an id is finished when one of its rows is ``good`` (default:
    every row), so a rerun skips it and retries the others (e.g. a failed request). Reading skips a last line that
    a crash left torn.
    """

    def __init__(self, path: str | os.PathLike, *, also_read: Iterable[str | os.PathLike] = (),
                 key: str | Callable[[dict], Any] = "id", good: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        self.sources = tuple(dict.fromkeys((self.path, *map(Path, also_read))))
        self.key_of = key if callable(key) else lambda row: row[key]
        self.good = good or (lambda row: True)

    def rows(self) -> list[dict]:
        """Every row of every source, in order."""
        return [row for source in self.sources for row in read_jsonl_tolerant(source)]

    def finished_ids(self) -> set[str]:
        """Ids with a good row."""
        return {self.key_of(row) for row in self.rows() if self.good(row)}

    def pending(self, items: Sequence, id_of: Callable[[Any], Any] = lambda item: item.id) -> list:
        """The ``items`` whose id (``id_of(item)``) is not finished, in order."""
        done = self.finished_ids()
        return [item for item in items if id_of(item) not in done]

    def kept_rows(self) -> dict[Any, dict]:
        """One row per id: its first good row, else its last row (a retried row replaces a failed one, and a
        later failure never hides an earlier good row)."""
        kept: dict[Any, dict] = {}
        for row in self.rows():
            earlier = kept.get(self.key_of(row))
            if earlier is None or not self.good(earlier):
                kept[self.key_of(row)] = row
        return kept

    def appender(self) -> JsonlAppender:
        """Appends rows to ``path``, each flushed and fsynced (use as a context manager)."""
        return JsonlAppender(self.path)
