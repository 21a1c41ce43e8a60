"""The gold-program teacher: a FinQA DSL program transpiled into readable program-of-thought Python.

The code follows the style of the PoT-distillation study's teacher: a ``# Calculate:`` line with the whole computation,
one named variable per number taken from the table or the text, one line per step, then ``ans``. For
``subtract(1901, 1888), divide(#0, 1888)`` on a table of operating leases by year (ABMD/2018/page_112.pdf-3)::

    # Calculate: ratio = (operating_leases_2021 - operating_leases_2020) / operating_leases_2020
    operating_leases_2021 = 1901
    operating_leases_2020 = 1888
    difference = operating_leases_2021 - operating_leases_2020
    ratio = difference / operating_leases_2020
    ans = ratio

How each DSL piece is written:

* A number is named after where it is found: first the evidence (``gold_inds``) table rows, then the
  evidence sentences, then the rest of the table and text. A table cell with its value or digits gives
  ``<row>_<column>`` (``<column>_<row>`` when the row label is a year); a sentence its last content words
  before the number (else the first after it) and a year just after it; else ``value``. Names are unique
  and never a keyword, a builtin or ``ans``. The same literal is one variable.
* ``const_N`` is written inline (``ratio * 100``, ``change * (-1)``); ``N%`` as ``N / 100``, which is what
  the official ``str_to_num`` computes; ``1,234`` as ``1234``.
* ``#k`` is the variable of step k; ``greater`` gives a bool (``True`` is yes), ``exp`` is ``**``.
* A table operation lists the row's numbers, read as the executor reads them (official cell cleaning,
  a later duplicate row label wins), and applies ``max``/``min``/``sum`` or ``sum(...) / len(...)``.

Exactness: every number is the executor's float, written as an ``int`` when it is integral and its ``repr``
otherwise, and every operation is the one the executor applies, so running the code gives exactly the
value of :func:`finqa_dsl.core.dsl.execute` before its rounding to 5 decimals. Int arithmetic equals float
arithmetic only below 2**53; a program whose ints would reach that is written with float literals instead
(``5829.0``).

Only identifiers built from ``[a-z0-9_]`` and numbers reach the code, so no passage can inject code. A
program that does not execute, has a garbled operator, or uses a yes/no result as a number raises
:class:`TranspileError`: no Python states its official value.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from finqa_dsl.core.data import Example
from finqa_dsl.core.dsl import (
    ARITHMETIC,
    INFIX,
    OPERATIONS,
    TABLE_OPERATIONS,
    Step,
    cell_literal,
    cell_number,
    execute,
    parse_program,
    reference,
    rows_by_first_cell,
    str_to_num,
)

ANSWER_VARIABLE = "ans"
EXACT_INT_LIMIT = 2**53  # below it, int arithmetic equals the executor's float arithmetic
TABLE_CODE = {"table_max": "max({})", "table_min": "min({})", "table_sum": "sum({})",
              "table_average": "sum({0}) / len({0})"}
STEP_NAMES = {"add": "total", "subtract": "difference", "multiply": "product", "divide": "ratio", "exp": "power",
              "greater": "is_greater", "table_max": "highest", "table_min": "lowest", "table_sum": "sum",
              "table_average": "average"}
MAX_NAME_WORDS = 6
MAX_NAME_CHARS = 48
_TEXT_NAME_WORDS = 4
_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "by", "during", "for", "from", "had", "has", "have", "in",
    "is", "it", "its", "of", "on", "or", "our", "per", "that", "the", "their", "these", "this", "those", "to",
    "was", "were", "which", "with", "approximately", "about", "respectively", "million", "millions", "billion",
    "billions", "thousand", "thousands", "total", "also", "up", "including", "ended", "january", "february",
    "march", "april", "may", "june", "july", "august", "september", "october", "november", "december",
})
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {ANSWER_VARIABLE}
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


class TranspileError(ValueError):
    """A gold program that no Python can state faithfully; the message names the example and why."""


def transpile(example: Example) -> str:
    """The example's gold program as program-of-thought Python whose ``ans`` is the program's value."""
    execution = execute(example.program, example.table)
    if not execution.ok:
        raise TranspileError(f"{example.id}: the gold program does not execute ({execution.reason})")
    steps = parse_program(example.program)
    _check_translatable(steps, example.id)
    sources = _Sources.of(example)
    readable = _Writer(sources, floats=False)
    code = readable.write(steps)
    return code if readable.exact else _Writer(sources, floats=True).write(steps)


def _check_translatable(steps: list[Step], example_id: str) -> None:
    yes_no_steps = set()
    for index, step in enumerate(steps):
        if step.op not in OPERATIONS:
            raise TranspileError(f"{example_id}: step {index} has the garbled operator {step.op!r}")
        if step.op == "greater":
            yes_no_steps.add(index)
        elif step.op in INFIX and any("#" in arg and reference(arg) in yes_no_steps
                                      for arg in (step.arg1, step.arg2)):
            raise TranspileError(f"{example_id}: step {index} uses a yes/no result as a number")


# --- numbers -----------------------------------------------------------------------------------------

Number = int | float


def _number(value: float, floats: bool) -> tuple[str, Number]:
    """(Python for ``value``, what that Python evaluates to): an int when integral below 2**53, unless
    ``floats``; else the float's ``repr``, which reads back to the same float."""
    if not math.isfinite(value):
        return f'float("{value}")', value
    if not floats and value.is_integer() and abs(value) < EXACT_INT_LIMIT:
        return str(int(value)), int(value)
    return repr(value), value


def _literal(text: str, floats: bool) -> tuple[str, Number, bool]:
    """(Python, its value, whether it is a ``const_N``) of a DSL literal, along the branches of ``str_to_num``."""
    plain = text.replace(",", "")
    try:
        number = float(plain)
    except ValueError:
        number = None
    if number is not None:
        return *_number(number, floats), False
    if "%" in plain:
        code, value = _number(float(plain.replace("%", "")), floats)
        return f"{code} / 100", value / 100, False
    return *_number(str_to_num(text), floats), True


# --- names -------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Lowercase alphanumeric words, parenthesised asides dropped."""
    return re.findall(r"[a-z0-9]+", re.sub(r"\([^)]*\)", " ", text.lower()))


def _content_words(text: str) -> list[str]:
    return [word for word in _words(text) if word not in _STOP_WORDS and not word.isdigit()]


@dataclass(frozen=True)
class _Sources:
    """The example's table, and where numbers are looked up for names: rows and sentences, evidence first."""

    table: tuple[tuple[str, ...], ...]
    row_order: tuple[int, ...]
    sentences: tuple[str, ...]

    @classmethod
    def of(cls, example: Example) -> _Sources:
        evidence = example.gold_inds or {}
        text = example.pre_text + example.post_text
        row_order = _evidence_first(range(len(example.table)), set(_indexes(evidence, "table")))
        text_order = _evidence_first(range(len(text)), set(_indexes(evidence, "text")))
        return cls(example.table, tuple(row_order), tuple(text[i] for i in text_order))

    def name_for(self, text: str, value: float) -> list[str]:
        """Name words for the number a literal stands for (empty when it is found nowhere): the first cell
        with its value or its digits, else the first sentence with its digits."""
        number = text.replace(",", "").replace("%", "").strip().lstrip("-")
        pattern = re.compile(rf"(?<![\d.,]){re.escape(number)}(?![\d]|[.,]\d)")
        for index in self.row_order:
            row = self.table[index]
            for column, cell in enumerate(row[1:], start=1):
                if cell_number(cell) == value or pattern.search(cell):
                    header = self.table[0][column] if index and column < len(self.table[0]) else ""
                    return _table_name(row[0], header)
        for sentence in self.sentences:
            match = pattern.search(sentence)
            if match:
                return _text_name(sentence, match.start(), match.end())
        return []


def _indexes(evidence: dict[str, str], kind: str) -> list[int]:
    return [int(key.split("_")[1]) for key in evidence if key.startswith(f"{kind}_")]


def _evidence_first(indexes: range, evidence: set[int]) -> list[int]:
    return sorted(indexes, key=lambda index: index not in evidence)


def _table_name(label: str, column: str) -> list[str]:
    label_words, column_words = _words(label), _words(column)
    if label_words[:1] and label_words[0][0].isdigit():
        return column_words[:4] + label_words[:2]
    return label_words[:4] + column_words[:3]


def _text_name(sentence: str, start: int, end: int) -> list[str]:
    words = _content_words(sentence[:start])[-_TEXT_NAME_WORDS:] or _content_words(sentence[end:])[:_TEXT_NAME_WORDS]
    year = _YEAR.search(sentence[end:end + 16])
    return words + [year.group()] if year and words and year.group() not in words else words


def _identifier(words: Sequence[str], fallback: str) -> str:
    name = ""
    for word in list(words)[:MAX_NAME_WORDS]:
        if name and len(name) + 1 + len(word) > MAX_NAME_CHARS:
            break
        name = f"{name}_{word}" if name else word[:MAX_NAME_CHARS]
    if not name:
        return fallback
    if name[0].isdigit():
        name = f"value_{name}"
    return f"{name}_value" if name in _RESERVED else name


# --- code --------------------------------------------------------------------------------------------


@dataclass
class _Writer:
    """Writes one program, tracking the value each line evaluates to (with the executor's own operations) to
    see whether int arithmetic stayed below 2**53, where it equals the executor's float arithmetic."""

    sources: _Sources
    floats: bool  # write every number as a float
    exact: bool = True  # no int value reached 2**53
    taken: set[str] = field(default_factory=set)
    literals: dict[str, str] = field(default_factory=dict)  # literal text -> variable
    rows: dict[str, str] = field(default_factory=dict)  # row label -> list variable
    values: dict[str, object] = field(default_factory=dict)  # variable -> the value it holds
    definitions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # step index -> its variable
    expressions: list[tuple[str, bool]] = field(default_factory=list)  # step -> (Calculate text, compound)

    def write(self, steps: list[Step]) -> str:
        for step in steps:
            if step.op in TABLE_CODE:
                self._table_step(step)
            else:
                self._arithmetic_step(step)
        last = self.names[-1]
        calculate = f"# Calculate: {last} = {self.expressions[-1][0]}"
        return "\n".join([calculate, *self.definitions, *self.lines, f"{ANSWER_VARIABLE} = {last}"]) + "\n"

    def _define(self, base: str, code: str, value: object, lines: list[str]) -> str:
        name, number = base, 1
        while name in self.taken:
            number += 1
            name = f"{base}_{number}"
        self.taken.add(name)
        lines.append(f"{name} = {code}")
        self.values[name] = value
        if isinstance(value, int) and abs(value) >= EXACT_INT_LIMIT:
            self.exact = False
        return name

    def _operand(self, arg: str) -> tuple[str, str, object]:
        """(code, Calculate text, value) of an arithmetic argument."""
        if "#" in arg:
            index = reference(arg)
            name = self.names[index]
            text, compound = self.expressions[index]
            return name, f"({text})" if compound else text, self.values[name]
        if arg not in self.literals:
            code, value, constant = _literal(arg, self.floats)
            if constant:
                code = f"({code})" if code.startswith("-") else code
                return code, code, value
            base = _identifier(self.sources.name_for(arg, str_to_num(arg)), "value")
            self.literals[arg] = self._define(base, code, value, self.definitions)
        name = self.literals[arg]
        return name, name, self.values[name]

    def _arithmetic_step(self, step: Step) -> None:
        (left, left_text, left_value), (right, right_text, right_value) = map(self._operand, (step.arg1, step.arg2))
        infix = INFIX[step.op]
        value = ARITHMETIC[step.op](left_value, right_value)
        self._add_step(STEP_NAMES[step.op], f"{left} {infix} {right}", value, f"{left_text} {infix} {right_text}")

    def _table_step(self, step: Step) -> None:
        label = step.arg1
        if label not in self.rows:
            cells = rows_by_first_cell(self.sources.table)[label]
            numbers = [_literal(cell_literal(cell), self.floats) for cell in cells]
            base = _identifier(_words(label)[:MAX_NAME_WORDS], "row")
            code = f"[{', '.join(code for code, _, _ in numbers)}]"
            self.rows[label] = self._define(base, code, [value for _, value, _ in numbers], self.definitions)
        row = self.rows[label]
        code = TABLE_CODE[step.op].format(row)
        base = _identifier([STEP_NAMES[step.op], *_words(label)], STEP_NAMES[step.op])
        self._add_step(base, code, TABLE_OPERATIONS[step.op](self.values[row]), code, step.op == "table_average")

    def _add_step(self, base: str, code: str, value: object, text: str, compound: bool = True) -> None:
        self.names.append(self._define(base, code, value, self.lines))
        self.expressions.append((text, compound))
