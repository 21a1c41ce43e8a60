"""What kind of example a FinQA example is, read from its gold: how many program steps, which operations, where
its evidence lies (table, text, both), and what kind of question it asks. The results report
(:mod:`finqa_dsl.runs.report`) groups accuracy by these.

Every classifier here is deterministic and reads only the example, never a prediction. The question type is a
small rule list over the gold program's steps, with one look at the question text; the first rule that matches
wins:

1. ``yes/no comparison``: the gold answer is yes/no or the program uses ``greater``.
2. ``percentage change``: the last step divides a difference (``subtract(a, b), divide(#0, b)``), or subtracts
   a ratio and 1 (``divide(a, b), subtract(#0, const_1)``, or ``subtract(const_1, #0)``), or divides while the
   question speaks of a change (change, growth, grow, increase, decrease, decline, rise, fall, drop).
3. ``sum / average``: the last step is ``add``, ``table_sum`` or ``table_average``, or divides by a constant
   after an ``add`` or ``table_sum`` step (an average written out).
4. ``ratio``: the last step divides (any other division: a share, a per-unit figure, a unit conversion).
5. ``difference``: the last step subtracts.
6. ``other``: anything else (``multiply``, ``exp``, ``table_max``/``table_min`` last; a gold program that does not
   parse).

A last step that only turns a fraction into a percentage (``multiply(#k, const_100)``) is looked through: the
rules read the program up to step ``k``.
"""

from __future__ import annotations

import re

from finqa_dsl.core.data import GOLD_KEY, YES_NO, Example
from finqa_dsl.core.dsl import Step, parse_program, reference

# Evidence kinds, from the example's gold_inds keys (table_N / text_N).
TABLE_ONLY = "table only"
TEXT_ONLY = "text only"
TABLE_AND_TEXT = "table and text"
NO_EVIDENCE = "no gold evidence"  # gold_inds absent or empty
EVIDENCE_KINDS = (TABLE_ONLY, TEXT_ONLY, TABLE_AND_TEXT, NO_EVIDENCE)

# Question types, in the order of the rules above.
YES_NO_COMPARISON = "yes/no comparison"
PERCENTAGE_CHANGE = "percentage change"
SUM_AVERAGE = "sum / average"
RATIO = "ratio"
DIFFERENCE = "difference"
OTHER = "other"
QUESTION_TYPES = (YES_NO_COMPARISON, PERCENTAGE_CHANGE, SUM_AVERAGE, RATIO, DIFFERENCE, OTHER)

# Step counts from this many on share one group.
MANY_STEPS = 5

_CHANGE_WORDS = re.compile(r"\b(change[sd]?|growth|grow|grew|increase[sd]?|decrease[sd]?|decline[sd]?|rise|rose|"
                           r"fall|fell|drop(ped)?)\b", re.IGNORECASE)
_CONSTANT = "const_"
_ONE = "const_1"
_PERCENT = "const_100"


def gold_steps(example: Example) -> list[Step] | None:
    """The steps of the example's gold program as the official evaluator reads them; None when it does not parse."""
    steps = parse_program(example.program)
    return steps if isinstance(steps, list) and steps else None


def step_count_group(example: Example) -> str:
    """The number of gold program steps as a group label: ``1`` .. ``4``, ``5+``, or ``unparsable``."""
    steps = gold_steps(example)
    if steps is None:
        return "unparsable"
    return f"{MANY_STEPS}+" if len(steps) >= MANY_STEPS else str(len(steps))


def gold_operations(example: Example) -> tuple[str, ...]:
    """Each operation the gold program uses, once, in the order they first appear."""
    return tuple(dict.fromkeys(step.op for step in gold_steps(example) or ()))


def evidence_kind(example: Example) -> str:
    """Where the example's gold evidence lies, from its ``gold_inds`` keys: one of :data:`EVIDENCE_KINDS`."""
    kinds = {GOLD_KEY.fullmatch(key)[1] for key in example.gold_inds or ()}
    if not kinds:
        return NO_EVIDENCE
    if kinds == {"table"}:
        return TABLE_ONLY
    return TEXT_ONLY if kinds == {"text"} else TABLE_AND_TEXT


def question_type(example: Example) -> str:
    """The kind of question, by the rules of this module's docstring: one of :data:`QUESTION_TYPES`."""
    steps = gold_steps(example)
    if example.exe_ans in YES_NO or any(step.op == "greater" for step in steps or ()):
        return YES_NO_COMPARISON
    if steps is None:
        return OTHER
    steps = _without_percent_scaling(steps)
    last = steps[-1]
    if _is_percentage_change(steps, example.question):
        return PERCENTAGE_CHANGE
    if last.op in ("add", "table_sum", "table_average") or (
            last.op == "divide" and last.arg2.startswith(_CONSTANT)
            and any(step.op in ("add", "table_sum") for step in steps[:-1])):
        return SUM_AVERAGE
    if last.op == "divide":
        return RATIO
    if last.op == "subtract":
        return DIFFERENCE
    return OTHER


def _without_percent_scaling(steps: list[Step]) -> list[Step]:
    """``steps`` up to the step that a last ``multiply(#k, const_100)`` (either order) scales to a percentage."""
    last = steps[-1]
    arguments = {last.arg1, last.arg2}
    if last.op != "multiply" or _PERCENT not in arguments:
        return steps
    (other,) = arguments - {_PERCENT} or {_PERCENT}
    index = reference(other) if other.startswith("#") else None
    return steps[:index + 1] if index is not None and 0 <= index < len(steps) - 1 else steps


def _is_percentage_change(steps: list[Step], question: str) -> bool:
    last = steps[-1]
    if last.op == "divide":
        return _op_of(steps, last.arg1) == "subtract" or bool(_CHANGE_WORDS.search(question))
    if last.op != "subtract" or _ONE not in (last.arg1, last.arg2):
        return False
    return "divide" in (_op_of(steps, last.arg1), _op_of(steps, last.arg2))


def _op_of(steps: list[Step], argument: str) -> str | None:
    """The operation of the earlier step an ``#k`` argument refers to; None for anything else."""
    if not argument.startswith("#"):
        return None
    index = reference(argument)
    return steps[index].op if index is not None and 0 <= index < len(steps) else None
