"""Grammars of well-formed answers, for grammar-constrained decoding (``--constrained_decoding``).

Grammars are written in Lark syntax, which llguidance reads for the HF engines
(:mod:`finqa_dsl.inference.grammar`) and vLLM's structured outputs read for the vLLM backend. They are built from
the DSL's own tables (:data:`~finqa_dsl.core.dsl.ARITHMETIC`, :data:`~finqa_dsl.core.dsl.TABLE_OPERATIONS`), so a
new operation is in the grammar as soon as it is in the DSL.

:func:`program_grammar` accepts exactly the programs that :func:`~finqa_dsl.core.dsl.execute` can run without a
malformed step, an unknown operation, an empty program or a reference to a step that does not exist: steps
``op(arg1, arg2)`` joined by ``", "``; arguments are numbers as FinQA writes them (``1,234.5``, ``-3``, ``.45``,
``23.6%``; at most 12 digits before the point and 6 after, so that a number cannot run on until the token budget
ends), constants (``const_100``, ``const_m1``) and ``#k`` for an earlier step only; table operations take a row
name of the example's own table (only names that the DSL can read back, of rows that hold numbers; no table
operation when there is none) and ``none`` (FinQA's programs always write it; the official evaluator ignores the
second argument of a table step, so a row name there is accepted too). A program has at most :data:`MAX_STEPS`
steps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from finqa_dsl.core.dsl import ARITHMETIC, TABLE_OPERATIONS, cell_number, parse_program

MAX_STEPS = 8  # the real FinQA programs have at most 5 (../shared/FinQA/real: 728 one-step ... 30 five-step)

# A number's parts are separate lexemes: the lexer ends a lexeme only where the next byte cannot extend it, so a
# thousands group ",234" and the separator ", " must not be parts of one lexeme.
_NUMBER = [
    'number: (INTEGER | LEADING_GROUP THOUSANDS (THOUSANDS (THOUSANDS THOUSANDS?)?)?) FRACTION? "%"? '
    '| "-"? FRACTION "%"?',
    "INTEGER: /-?[0-9]{1,12}/",
    "LEADING_GROUP: /-?[0-9]{1,3}/",
    "THOUSANDS: /,[0-9]{3}/",
    r"FRACTION: /\.[0-9]{1,6}/",
    "CONSTANT: /const_(m1|[0-9]{1,7})/",
]


def referable_rows(table: Sequence[Sequence[str]]) -> list[str]:
    """The first cells of ``table`` that a table step can name and the DSL reads back unchanged (no ``(``,
    ``)`` or ``", "`` inside, no surrounding spaces) and whose row holds numbers only (a table operation on any
    other row is ``non_numeric``), each once, in table order."""
    names = []
    for row in table:
        name = row[0] if row else ""
        steps = parse_program(f"table_sum({name}, none)") if name and name == name.strip() else None
        numbers = [cell_number(cell) for cell in row[1:]]
        if (isinstance(steps, list) and len(steps) == 1 and steps[0].arg1 == name and name not in names
                and numbers and None not in numbers):
            names.append(name)
    return names


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _choice(texts: Sequence[str]) -> str:
    return " | ".join(map(_literal, texts))


def program_grammar(table: Sequence[Sequence[str]] = (), max_steps: int = MAX_STEPS) -> str:
    """The Lark grammar of the well-formed FinQA programs of at most ``max_steps`` steps over ``table``."""
    rows = referable_rows(table)
    lines = [
        "start: " + "".join(f"step_{k}" if k == 0 else f' (", " step_{k}' for k in range(max_steps))
        + ")?" * (max_steps - 1),
        f"ARITHMETIC: {_choice(tuple(ARITHMETIC))}",
        *_NUMBER,
    ]
    if rows:
        lines += [f"TABLE_OPERATION: {_choice(tuple(TABLE_OPERATIONS))}", f"ROW: {_choice(rows)}",
                  'table_step: TABLE_OPERATION "(" ROW ", " ("none" | ROW) ")"']
    for k in range(max_steps):
        references = [f"#{j}" for j in range(k)]
        argument = " | ".join(["number", "CONSTANT", *([_choice(references)] if references else [])])
        lines += [f"arg_{k}: {argument}",
                  f'step_{k}: ARITHMETIC "(" arg_{k} ", " arg_{k} ")"' + (" | table_step" if rows else "")]
    return "\n".join(lines) + "\n"


def number_grammar() -> str:
    """The Lark grammar of a plain number (``-12.5``, ``0.145``) or ``yes``/``no``."""
    return 'start: /-?[0-9]{1,15}(\\.[0-9]{1,8})?/ | "yes" | "no"\n'
