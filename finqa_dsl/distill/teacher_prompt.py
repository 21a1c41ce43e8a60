"""The teacher's few-shot prompt: program-of-thought Python, as the PoT-distillation study's teacher was asked (the
code is read back from replies by :func:`finqa_dsl.core.python_code.extract_code`).

A prompt shows solved shots, each ``###Passage`` / ``###Question`` / (``###Hint`` with the gold FinQA program,
when hints are on) / ``###Python`` code ``###End Python``, then the question to solve, ending at ``###Python``.
The code defines a variable for each number it uses and assigns the result to ``ans`` (True/False for a yes/no
question).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from finqa_dsl.core.context import ContextConfig, build_context
from finqa_dsl.core.data import Example
from finqa_dsl.core.python_code import END_PYTHON_MARKER, PYTHON_MARKER

PASSAGE, QUESTION, HINT = "###Passage", "###Question", "###Hint"
PYTHON, END_PYTHON = PYTHON_MARKER, END_PYTHON_MARKER  # the code's markers, shared with extraction
SYSTEM = (
    "You write Python that answers a question about a company's financial report. Define a variable for each "
    "number you take from the passage, compute step by step, and assign the final result to `ans`: a number "
    "(a percentage as a fraction, e.g. 0.145), or True/False for a yes/no question. Use plain Python only, no "
    f"imports, no printing. Reply with the code alone, between {PYTHON} and {END_PYTHON}."
)


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
