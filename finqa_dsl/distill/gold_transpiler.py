"""The gold-program teacher: a FinQA DSL program transpiled into readable program-of-thought Python.

The code follows the teacher style of the second seed: a ``# Calculate:`` line with the whole computation,
one named variable per number taken from the table or the text, one line per step, then ``ans``::

    # Calculate: ratio = (aircraft_fuelexpense_2018 - aircraft_fuelexpense_2017) / aircraft_fuelexpense_2017
    aircraft_fuelexpense_2018 = 9896
    aircraft_fuelexpense_2017 = 7510
    difference = aircraft_fuelexpense_2018 - aircraft_fuelexpense_2017
    ratio = difference / aircraft_fuelexpense_2017
    ans = ratio

How each DSL piece is written:

* A number is named after where it is found: first the evidence (``gold_inds``) table rows, then the
  evidence sentences, then the rest of the table and text. A table cell gives ``<row>_<column>``
  (``<column>_<row>`` when the row label is a year), a sentence its last content words before the
  number (and a year just after it); else ``value``. Names are unique, never a keyword or builtin.
* ``const_N`` is written inline (``ratio * 100``, ``change * (-1)``); ``N%`` as ``N / 100``, which is what
  the official ``str_to_num`` computes; ``1,234`` as ``1234``.
* ``#k`` is the variable of step k; ``greater`` gives a bool (``True`` is yes), ``exp`` is ``**``.
* A table operation lists the row's numbers, read as the executor reads them (official cell cleaning,
  a later duplicate row label wins), and applies ``max``/``min``/``sum`` or ``sum(...) / len(...)``.

Exactness: every number is the executor's float, written as an ``int`` when it is integral (below 2**53)
and as its ``repr`` otherwise, and every operation is the one the executor applies, so running the code
gives the value of :func:`finqa_dsl.core.dsl.execute` before its rounding to 5 decimals. The one possible
gap: ``int`` arithmetic is exact where float arithmetic rounds, which only shows on values beyond 2**53.

Only text matched ``[a-z0-9_]`` reaches the code (in names), so no passage can inject code. A program that
does not execute, has a garbled operator, or uses a yes/no result as a number raises
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
    INFIX,
    OPERATIONS,
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
TABLE_CODE = {"table_max": "max({})", "table_min": "min({})", "table_sum": "sum({})",
              "table_average": "sum({0}) / len({0})"}
STEP_NAMES = {"add": "total", "subtract": "difference", "multiply": "product", "divide": "ratio", "exp": "power",
              "greater": "is_greater", "table_max": "highest", "table_min": "lowest", "table_sum": "total",
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
    return _Writer(_Sources.of(example)).write(steps)


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


def _number_code(value: float) -> str:
    """Python that evaluates to ``value`` exactly (int when integral, for readability)."""
    if not math.isfinite(value):
        return f'float("{value}")'
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _literal_code(text: str) -> tuple[str, bool]:
    """(Python for a DSL literal, whether it is a ``const_N``), following the branches of ``str_to_num``."""
    plain = text.replace(",", "")
    try:
        return _number_code(float(plain)), False
    except ValueError:
        pass
    if "%" in plain:
        return f"{_number_code(float(plain.replace('%', '')))} / 100", False
    return _number_code(str_to_num(text)), True


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
    return words + [year.group()] if year and words else words


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
    """Collects the variable definitions and step lines of one program."""

    sources: _Sources
    taken: set[str] = field(default_factory=set)
    literals: dict[str, str] = field(default_factory=dict)  # literal text -> variable
    rows: dict[str, str] = field(default_factory=dict)  # row label -> list variable
    definitions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # step index -> its variable
    expressions: list[tuple[str, bool]] = field(default_factory=list)  # step -> (expression, compound)

    def write(self, steps: list[Step]) -> str:
        for step in steps:
            if step.op in TABLE_CODE:
                self._table_step(step)
            else:
                self._arithmetic_step(step)
        last = self.names[-1]
        calculate = f"# Calculate: {last} = {self.expressions[-1][0]}"
        return "\n".join([calculate, *self.definitions, *self.lines, f"{ANSWER_VARIABLE} = {last}"]) + "\n"

    def _unique(self, base: str) -> str:
        name, number = base, 1
        while name in self.taken:
            number += 1
            name = f"{base}_{number}"
        self.taken.add(name)
        return name

    def _operand(self, arg: str) -> tuple[str, str]:
        """(code, expression for the Calculate line) of an arithmetic argument."""
        if "#" in arg:
            index = reference(arg)
            expression, compound = self.expressions[index]
            return self.names[index], f"({expression})" if compound else expression
        if arg in self.literals:
            return self.literals[arg], self.literals[arg]
        code, constant = _literal_code(arg)
        if constant:
            code = f"({code})" if code.startswith("-") else code
            return code, code
        name = self._unique(_identifier(self.sources.name_for(arg, str_to_num(arg)), "value"))
        self.literals[arg] = name
        self.definitions.append(f"{name} = {code}")
        return name, name

    def _arithmetic_step(self, step: Step) -> None:
        (left, left_text), (right, right_text) = self._operand(step.arg1), self._operand(step.arg2)
        infix = INFIX[step.op]
        self._add_step(STEP_NAMES[step.op], f"{left} {infix} {right}", f"{left_text} {infix} {right_text}", True)

    def _table_step(self, step: Step) -> None:
        label = step.arg1
        if label not in self.rows:
            cells = rows_by_first_cell(self.sources.table)[label]
            values = ", ".join(_literal_code(cell_literal(cell))[0] for cell in cells)
            self.rows[label] = self._unique(_identifier(_words(label)[:MAX_NAME_WORDS], "row"))
            self.definitions.append(f"{self.rows[label]} = [{values}]")
        row = self.rows[label]
        code = TABLE_CODE[step.op].format(row)
        base = _identifier([STEP_NAMES[step.op], *_words(label)], STEP_NAMES[step.op])
        self._add_step(base, code, code, step.op == "table_average")

    def _add_step(self, base: str, code: str, expression: str, compound: bool) -> None:
        name = self._unique(base)
        self.names.append(name)
        self.expressions.append((expression, compound))
        self.lines.append(f"{name} = {code}")
