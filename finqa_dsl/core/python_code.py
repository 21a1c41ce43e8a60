"""The Python-code target: what a model writes (code in a fenced block, ``ans`` holding the result), how the code
is read back out of a generation, and what running it gave.

The code itself never runs here: :mod:`finqa_dsl.sandbox` runs it, and :class:`CodeExecution` carries the result
into scoring (:func:`finqa_dsl.core.metrics.score_code_prediction`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PYTHON_MARKER, END_PYTHON_MARKER = "###Python", "###End Python"  # the study's teacher format
NO_CODE = "no_code"  # a failure reason: the generation holds no code
_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class CodeExecution:
    """What running one generation's code gave: ``code`` None when there was none; else ``value`` (a float,
    "yes"/"no" or text) when ``reason`` is None, or the sandbox's ``reason`` and ``detail``."""

    code: str | None
    value: float | str | None = None
    reason: str | None = None
    detail: str = ""


def fenced(code: str) -> str:
    """``code`` as the code target writes it: one fenced Python block."""
    return f"```python\n{code.strip()}\n```"


def extract_code(reply: str | None) -> str | None:
    """The code in a generation: what precedes ``###End Python`` (after the last ``###Python`` before it), else the
    last fenced block (or a block left open when generation stopped), else the whole reply when it assigns
    ``ans``; None when there is no code."""
    if not reply:
        return None
    if END_PYTHON_MARKER in reply:
        code = reply.split(END_PYTHON_MARKER, 1)[0].rsplit(PYTHON_MARKER, 1)[-1]
    elif blocks := _FENCED.findall(reply):
        code = blocks[-1]
    elif opened := _OPEN_FENCE.search(reply):
        code = opened.group(1)
    elif re.search(r"^\s*ans\s*=", reply, re.MULTILINE):
        code = reply.split(PYTHON_MARKER)[-1]
    else:
        return None
    code = code.strip("\n")
    return code if code.strip() else None
