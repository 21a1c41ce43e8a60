"""The teacher's few-shot prompt (program-of-thought Python, as the second seed's teacher was asked) and the
extraction of the code from its reply.

A prompt shows solved shots, each ``###Passage`` / ``###Question`` / (``###Hint`` with the gold FinQA program,
when hints are on) / ``###Python`` code ``###End Python``, then the question to solve, ending at ``###Python``.
The code defines a variable for each number it uses and assigns the result to ``ans`` (True/False for a yes/no
question).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from finqa_dsl.core.context import ContextConfig, build_context
from finqa_dsl.core.data import Example

PASSAGE, QUESTION, HINT, PYTHON, END_PYTHON = "###Passage", "###Question", "###Hint", "###Python", "###End Python"
SYSTEM = (
    "You write Python that answers a question about a company's financial report. Define a variable for each "
    "number you take from the passage, compute step by step, and assign the final result to `ans`: a number "
    "(a percentage as a fraction, e.g. 0.145), or True/False for a yes/no question. Use plain Python only, no "
    f"imports, no printing. Reply with the code alone, between {PYTHON} and {END_PYTHON}."
)
_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class SolvedShot:
    """A solved example shown to the teacher."""

    example: Example
    code: str


def render_problem(example: Example, context_config: ContextConfig, *, hint: bool) -> str:
    """Passage, question and (with ``hint``) the gold program, ending at the ``###Python`` marker."""
    parts = [PASSAGE, build_context(example, context_config).render(), QUESTION, example.question]
    if hint:
        parts += [HINT, f"A reference calculation: {example.program}"]
    return "\n".join([*parts, PYTHON]) + "\n"


def teacher_messages(example: Example, shots: Sequence[SolvedShot], context_config: ContextConfig, *,
                     hint: bool) -> list[dict]:
    """Chat messages asking the teacher for ``example``'s code after the solved ``shots``."""
    solved = "".join(f"{render_problem(shot.example, context_config, hint=hint)}{shot.code.strip()}\n{END_PYTHON}\n\n"
                     for shot in shots if shot.example.id != example.id)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": solved + render_problem(example, context_config, hint=hint)}]


def extract_code(reply: str | None) -> str | None:
    """The code in a teacher's or student's reply: what precedes ``###End Python`` (after the last ``###Python``
    before it, if the reply repeats the marker), else the last fenced Python block, else the whole reply when it
    assigns ``ans``; None when there is no code."""
    if not reply:
        return None
    if END_PYTHON in reply:
        code = reply.split(END_PYTHON, 1)[0].rsplit(PYTHON, 1)[-1]
    elif blocks := _FENCED.findall(reply):
        code = blocks[-1]
    elif re.search(r"^\s*ans\s*=", reply, re.MULTILINE):
        code = reply.split(PYTHON)[-1]
    else:
        return None
    code = code.strip("\n")
    return code if code.strip() else None
