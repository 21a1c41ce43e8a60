"""Errors that are the user's: raised with a message that says what to do, before anything heavy loads."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class UsageError(ValueError):
    """A command line or configuration that cannot work; the message says what to do instead."""


class DatasetError(ValueError):
    """A dataset file or record without the FinQA shape; the message names file, record and field."""

    @classmethod
    def for_field(cls, path: str | os.PathLike | None, record: str, name: str, expected: str) -> DatasetError:
        """``"<file>: record <id or #index>: field '<name>': <expected>"`` (file left out when unknown)."""
        prefix = f"{path}: " if path else ""
        return cls(f"{prefix}record {record}: field '{name}': {expected}")


class CorruptFileError(UsageError):
    """A file the run reads back (e.g. a resumed predictions file) with a line that cannot be parsed."""


def record_frame(record: Any, index: int, path: str | os.PathLike | None
                 ) -> tuple[str, dict, Callable[[str, str], DatasetError]]:
    """``(id, qa, fail)`` of a raw record #``index`` of ``path``, checked to be an object with an id and a ``qa``
    object; ``fail(field, expected)`` makes the error naming the file, the record and the field."""
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: record #{index}: expected a JSON object, got {type(record).__name__}")
    example_id = record.get("id")
    if not isinstance(example_id, str) or not example_id:
        raise DatasetError.for_field(path, f"#{index}", "id", "a non-empty string")

    def fail(name: str, expected: str) -> DatasetError:
        return DatasetError.for_field(path, example_id, name, expected)

    qa = record.get("qa")
    if not isinstance(qa, dict):
        raise fail("qa", "an object with question, program and exe_ans")
    return example_id, qa, fail
