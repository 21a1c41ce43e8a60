"""Errors that are the user's: raised with a message that says what to do, before anything heavy loads."""

from __future__ import annotations

import os


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
