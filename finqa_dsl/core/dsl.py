"""The FinQA program DSL: tokenize, execute and compare programs with the official evaluator's semantics.

The reference is ``code/evaluate/evaluate.py`` of czyssrs/FinQA. Its numbers are reproduced exactly,
quirks included; each quirk is named where it is implemented. Malformed programs are values (an
:class:`Execution` with a :class:`Reason`, or ``False`` from :func:`programs_equivalent`), never exceptions.

A program string such as ``subtract(5829, 5735), divide(#0, 5735)`` becomes the official token list
``['subtract(', '5829', '5735', ')', 'divide(', '#0', '5735', ')', 'EOF']``. Steps are read the
official way: the tokens before the last one are joined with ``|`` and split on ``)``.
"""

from __future__ import annotations

import math
import operator
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

OPERATIONS: tuple[str, ...] = (
    "add", "subtract", "multiply", "divide", "exp", "greater",
    "table_max", "table_min", "table_sum", "table_average",
)
# The Python (and sympy) infix operator of each arithmetic operation.
INFIX = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "exp": "**", "greater": ">"}
END_OF_PROGRAM = "EOF"
END_OF_TURN_MARKERS: tuple[str, ...] = ("<end_of_turn>", "<|im_end|>", "<|endoftext|>", "</s>", "<eos>")
YES, NO = "yes", "no"
# Guards against programs built to explode (official would run out of memory or time on them).
MAX_EXPRESSION_CHARS = 2000
MAX_TEXT_VALUE_CHARS = 4096

Value = float | str


class Reason(StrEnum):
    """Why a program has no usable value."""

    MALFORMED = "malformed"  # a step is not `op(arg1, arg2)`
    UNKNOWN_OP = "unknown_op"  # a token in an operator position is not one of OPERATIONS
    EMPTY = "empty"  # no complete step (official: valid, value "n/a")
    BAD_REFERENCE = "bad_reference"  # `#k` that is not an earlier step
    MISSING_ROW = "missing_row"  # no table row with that first cell (or a table row without cells)
    EMPTY_ROW = "empty_row"  # table_max/min of a row without values
    NON_NUMERIC = "non_numeric"  # a literal or table cell that is not a number
    DIVISION_BY_ZERO = "division_by_zero"
    OVERFLOW = "overflow"
    TYPE_ERROR = "type_error"  # yes/no used as a number, or a number compared with yes/no
    COMPLEX_RESULT = "complex_result"  # e.g. exp(-8, 0.5)


@dataclass(frozen=True)
class Execution:
    """The result of running a program: a value rounded like official, or the reason there is none."""

    value: Value | None
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class Step:
    """One step as official reads it: ``op(arg1, arg2)``, arguments stripped, ``#k`` kept as text."""

    key: str  # the step text as official keys table steps: with a leading '|' for every step but the first
    op: str
    arg1: str
    arg2: str


_END_OF_TURN = re.compile("|".join(re.escape(marker) for marker in END_OF_TURN_MARKERS))
_TOKEN = re.compile(r"[^()]*\(|\)|[^()]+")


def clean_generation(text: str) -> str:
    """Strip what a generation carries around a program: end-of-turn text (and all after it),
    surrounding whitespace and one trailing ``EOF``.

    Nothing inside the program is repaired: ``add(1,2)`` stays as invalid as official makes it.
    """
    text = _END_OF_TURN.split(text, maxsplit=1)[0].strip()
    if text.endswith(END_OF_PROGRAM):
        text = text[: -len(END_OF_PROGRAM)].rstrip()
    return text


def tokenize(program: str) -> list[str]:
    """Official ``program_tokenization``: split on ``', '``; ``(`` ends a token, ``)`` is one; ``EOF`` last.

    ``tokenize("add(1, 2)") == ["add(", "1", "2", ")", "EOF"]``; ``"add(1,2)"`` keeps ``"1,2"`` as one token.
    """
    tokens = [token for piece in program.split(", ") for token in _TOKEN.findall(piece)]
    tokens.append(END_OF_PROGRAM)
    return tokens


def str_to_num(text: str) -> float | None:
    """Official ``str_to_num``: ``,`` removed, then ``float``; else ``N%`` -> N/100; else ``const_N`` -> N
    (``const_m1`` -> -1; any N, and every ``const_`` inside the text is removed as official does);
    else ``None``."""
    text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    if "%" in text:
        try:
            return float(text.replace("%", "")) / 100.0
        except ValueError:
            return None
    if "const" in text:
        constant = text.replace("const_", "")
        try:
            return -1.0 if constant == "m1" else float(constant)
        except ValueError:
            return None
    return None


def execute(program: str | Sequence[str], table: Sequence[Sequence[str]]) -> Execution:
    """Run a program string (tokenized as is) or official token list against a normalised table.

    Official semantics: the result of the last step, rounded to 5 decimals unless yes/no. Quirks kept:
    the last token is dropped unread (it is meant to be ``EOF``); a truncated tail after the last ``)``
    is ignored; literals go through :func:`str_to_num`; ``nan``/``inf`` literals are numbers; Python's
    operators apply as they are, so ``yes + no`` concatenates to a string (an error only once it reaches
    the result or a number; over ``MAX_TEXT_VALUE_CHARS`` it is ``OVERFLOW``) and ``greater`` compares
    yes/no strings as strings; a step whose operator text is garbled because its ``(`` sits in an argument
    (``add, x(, 1|2)``) is skipped. Deviation: a table operation whose argument is ``#k`` is
    ``BAD_REFERENCE`` (official silently reuses the row of the previous table step, or fails).
    """
    steps = parse_program(program)
    if isinstance(steps, Reason):
        return Execution(None, steps)
    table_rows: dict[str, Sequence[str]] | Reason | None = None
    results: dict[int, object] = {}
    result: object = None
    for index, step in enumerate(steps):
        if step.op in ARITHMETIC:
            outcome = _arithmetic(step, results)
        elif "table" in step.op:
            if table_rows is None:
                table_rows = rows_by_first_cell(table)
            outcome = _table_operation(step, table_rows, result)
        else:
            continue
        if isinstance(outcome, Reason):
            return Execution(None, outcome)
        result = results[index] = outcome
    return _final(result)


def programs_equivalent(gold: str | Sequence[str], predicted: str | Sequence[str]) -> bool:
    """Official program accuracy (``equal_program``): symbolic equivalence of the last steps.

    Every literal argument and table step of the gold program becomes a symbol ``a0, a1, ...`` in order
    of appearance; the prediction may use only those (a table step must match the gold's raw step text,
    so the same table step at another position, with or without the leading ``|``, does not match) and
    must reference earlier steps only. Both programs become the expression of their last step (steps it
    does not reach are ignored) and are compared after ``sympy.simplify(text, evaluate=False)``.

    Fast paths give official's answer without sympy: expressions with equal keys (see ``_key``: sympy
    parses them into the same expression) are equivalent; expressions whose values at a random point
    surely differ (see ``_bounds``), and a comparison against arithmetic, cannot simplify to the same
    form. The rest go to sympy, memoised.
    An unusable gold program (official raises) and expressions over ``MAX_EXPRESSION_CHARS``
    characters (only built by exploding programs) are not equivalent.
    """
    gold_steps = _parse_steps(_as_tokens(gold))
    predicted_tokens = _as_tokens(predicted)
    predicted_steps = _structure_error(predicted_tokens) or _parse_steps(predicted_tokens)
    if isinstance(gold_steps, Reason) or isinstance(predicted_steps, Reason) or not gold_steps:
        return False
    symbols = _gold_symbols(gold_steps)
    if not predicted_steps or not _uses_only(predicted_steps, symbols):
        return False
    gold_expression = _last_expression(gold_steps, symbols)
    predicted_expression = _last_expression(predicted_steps, symbols)
    if gold_expression is None or predicted_expression is None:
        return False
    if gold_expression.key == predicted_expression.key:
        return True
    if _surely_different(gold_expression, predicted_expression):
        return False
    predicted_form = _simplified(predicted_expression.text)
    return predicted_form is not None and _simplified(gold_expression.text) == predicted_form


# --- parsing -----------------------------------------------------------------------------------------


def _as_tokens(program: str | Sequence[str]) -> list[str]:
    return tokenize(program) if isinstance(program, str) else list(program)


def _structure_error(tokens: list[str]) -> Reason | None:
    """Official structure check on the tokens before the last: operator at every 4th, ``)`` after."""
    for index, token in enumerate(tokens[:-1]):
        if index % 4 == 0 and token.strip("(") not in OPERATIONS:
            return Reason.UNKNOWN_OP
        if index % 4 == 3 and token != ")":
            return Reason.MALFORMED
    return None


def parse_program(program: str | Sequence[str]) -> list[Step] | Reason:
    """The steps of a program string or token list as :func:`execute` reads them, or why it cannot."""
    tokens = _as_tokens(program)
    return _structure_error(tokens) or _parse_steps(tokens)


def _parse_steps(tokens: list[str]) -> list[Step] | Reason:
    """Steps as official reads them; the text after the last ``)`` (a truncated step) is dropped."""
    steps = []
    for raw in "|".join(tokens[:-1]).split(")")[:-1]:
        key = raw.strip()
        head, paren, rest = key.partition("(")
        args = rest.strip("|").strip().split("|")
        if not paren or "(" in rest or len(args) < 2:
            return Reason.MALFORMED
        steps.append(Step(key, head.strip("|").strip(), args[0].strip(), args[1].strip()))
    return steps


def reference(arg: str) -> int | None:
    """The step index of a ``#k`` argument as official reads it (every ``#`` removed, then ``int``)."""
    try:
        return int(arg.replace("#", ""))
    except ValueError:
        return None


# --- execution ---------------------------------------------------------------------------------------


def _greater(left: object, right: object) -> str:
    return YES if left > right else NO


# What each operation computes: Python's operators and builtins, as official applies them.
ARITHMETIC: dict[str, Callable[[object, object], object]] = {
    "add": operator.add,
    "subtract": operator.sub,
    "multiply": operator.mul,
    "divide": operator.truediv,
    "exp": operator.pow,
    "greater": _greater,
}
TABLE_OPERATIONS: dict[str, Callable[[list[float]], float]] = {
    "table_max": max,
    "table_min": min,
    "table_sum": sum,
    "table_average": lambda row: sum(row) / len(row),
}


def _operand(arg: str, results: dict[int, object]) -> object:
    if "#" in arg:
        index = reference(arg)
        return results.get(index, Reason.BAD_REFERENCE)
    number = str_to_num(arg)
    return Reason.NON_NUMERIC if number is None else number


def _arithmetic(step: Step, results: dict[int, object]) -> object:
    left = _operand(step.arg1, results)
    if isinstance(left, Reason):
        return left
    right = _operand(step.arg2, results)
    if isinstance(right, Reason):
        return right
    if isinstance(left, str) and isinstance(right, str) and len(left) + len(right) > MAX_TEXT_VALUE_CHARS:
        return Reason.OVERFLOW
    try:
        return ARITHMETIC[step.op](left, right)
    except ZeroDivisionError:
        return Reason.DIVISION_BY_ZERO
    except OverflowError:
        return Reason.OVERFLOW
    except (TypeError, ValueError):
        return Reason.TYPE_ERROR


def rows_by_first_cell(table: Sequence[Sequence[str]]) -> dict[str, Sequence[str]] | Reason:
    """Row cells after the first, keyed by the first cell; a later duplicate wins, as official."""
    if any(len(row) == 0 for row in table):
        return Reason.MISSING_ROW
    return {row[0]: row[1:] for row in table}


def cell_literal(cell: str) -> str:
    """Official ``process_row`` cleaning of a table cell: ``$`` removed, text from ``(`` on dropped."""
    return cell.replace("$", "").strip().split("(")[0].strip()


def cell_number(cell: str) -> float | None:
    """A table cell's number as table operations read it: :func:`cell_literal`, then :func:`str_to_num`."""
    return str_to_num(cell_literal(cell))


def _table_operation(step: Step, rows: dict[str, Sequence[str]] | Reason, previous: object) -> object:
    if isinstance(rows, Reason):
        return rows
    if "#" in step.arg1:
        return Reason.BAD_REFERENCE
    if step.arg1 not in rows:
        return Reason.MISSING_ROW
    numbers = [cell_number(cell) for cell in rows[step.arg1]]
    if None in numbers:
        return Reason.NON_NUMERIC
    if step.op not in TABLE_OPERATIONS:
        return previous  # garbled operator containing "table": official keeps the previous result
    if not numbers and step.op != "table_sum":
        return Reason.DIVISION_BY_ZERO if step.op == "table_average" else Reason.EMPTY_ROW
    return TABLE_OPERATIONS[step.op](numbers)


def _final(result: object) -> Execution:
    if result is None:
        return Execution(None, Reason.EMPTY)
    if result in (YES, NO):
        return Execution(result)
    if isinstance(result, str):
        return Execution(None, Reason.TYPE_ERROR)
    if isinstance(result, complex):
        return Execution(None, Reason.COMPLEX_RESULT)
    return Execution(float(round(result, 5)))


# --- symbolic equivalence ----------------------------------------------------------------------------

# An expression's key: equal keys guarantee that sympy parses both texts into the same expression (simplify
# does not pass ``evaluate=False`` on to sympify, and sympy's Add/Mul are symmetric, flatten their arguments
# and collect like terms), hence the same simplified form. Pure +-*/ trees get a normal form: a sum is the
# set of its terms with coefficient +-1, a product the set of its factors with exponent +-1, after like
# terms/factors are collected and cancelled. Where sympy would build something else (a coefficient or
# exponent of 2, a sum or product of fewer than two parts) and for exp and greater, the node is opaque:
# compared only up to the order of add/multiply operands.
Key = tuple
Bounds = tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Expression:
    text: str  # official's infix text, e.g. "( a0 - a1 )", the input of sympy
    key: Key
    bounds: Bounds | None  # encloses the value at a fixed random point (greater: left - right); None: unknown


def _gold_symbols(steps: list[Step]) -> dict[str, str]:
    """Official ``sym_map``: gold literals and raw table-step texts -> ``a0, a1, ...`` in order."""
    symbols: dict[str, str] = {}
    for step in steps:
        literals = [arg for arg in (step.arg1, step.arg2) if "#" not in arg]
        for name in [step.key] if "table" in step.op else literals:
            symbols.setdefault(name, f"a{len(symbols)}")
    return symbols


def _uses_only(steps: list[Step], symbols: dict[str, str]) -> bool:
    """The prediction uses gold symbols only and references earlier steps only (official's check)."""
    for index, step in enumerate(steps):
        if "table" in step.op:
            if step.key not in symbols:
                return False
            continue
        for arg in (step.arg1, step.arg2):
            if "#" not in arg:
                if arg not in symbols:
                    return False
                continue
            try:
                if int(arg.strip("#")) >= index:
                    return False
            except ValueError:
                return False
    return True


def _last_expression(steps: list[Step], symbols: dict[str, str]) -> _Expression | None:
    """The expression of the last step; a step that cannot be expressed is None and poisons only its users."""
    expressions: list[_Expression | None] = []
    for step in steps:
        expressions.append(_step_expression(step, expressions, symbols))
    return expressions[-1]


def _step_expression(step: Step, earlier: list[_Expression | None],
                     symbols: dict[str, str]) -> _Expression | None:
    if "table" in step.op:
        name = symbols.get(step.key)
        return None if name is None else _symbol(name)
    infix = INFIX.get(step.op)
    left = _argument_expression(step.arg1, earlier, symbols)
    right = _argument_expression(step.arg2, earlier, symbols)
    if infix is None or left is None or right is None:
        return None
    text = f"( {left.text} {infix} {right.text} )"
    if len(text) > MAX_EXPRESSION_CHARS:
        return None
    return _Expression(text, _key(infix, left.key, right.key), _bounds(infix, left.bounds, right.bounds))


def _argument_expression(arg: str, earlier: list[_Expression | None],
                         symbols: dict[str, str]) -> _Expression | None:
    if "#" not in arg:
        name = symbols.get(arg)
        return None if name is None else _symbol(name)
    index = reference(arg)
    return earlier[index] if index is not None and 0 <= index < len(earlier) else None


@cache
def _symbol(name: str) -> _Expression:
    """A symbol, valued at a fixed random point in [1, 2) (the same for gold and prediction)."""
    value = random.Random(f"finqa-dsl:{name}").uniform(1.0, 2.0)
    return _Expression(name, ("symbol", name), (value, value))


def _key(infix: str, left: Key, right: Key) -> Key:
    if left[0] != "opaque" and right[0] != "opaque" and infix in "+-*/":
        kind = "sum" if infix in "+-" else "product"
        collected: dict[Key, int] = {}
        for sign, part in _parts(left, kind) + _parts(right, kind, negate=infix in "-/"):
            collected[part] = collected.get(part, 0) + sign
        parts = frozenset((sign, part) for part, sign in collected.items() if sign)
        if len(parts) >= 2 and all(abs(sign) == 1 for sign, _ in parts):
            return (kind, parts)
    if infix in "+*":
        return ("opaque", infix, frozenset((left, right)))
    return ("opaque", infix, left, right)


def _parts(key: Key, kind: str, negate: bool = False) -> list[tuple[int, Key]]:
    """The signed terms of a sum, or the factors (with exponent +-1) of a product."""
    parts = list(key[1]) if key[0] == kind else [(1, key)]
    return [(-sign, part) for sign, part in parts] if negate else parts


def _is_comparison(expression: _Expression) -> bool:
    return expression.key[:2] == ("opaque", ">")


def _bounds(infix: str, left: Bounds | None, right: Bounds | None) -> Bounds | None:
    """Interval arithmetic, rounded outwards: the exact value of the expression at the symbols' point lies
    within. None where it cannot be bounded (a divisor or power base that may be <= 0, overflow)."""
    if left is None or right is None:
        return None
    (a, b), (c, d) = left, right
    try:
        if infix == "+":
            low, high = a + c, b + d
        elif infix in "->":
            low, high = a - d, b - c
        elif infix == "*" or (infix == "/" and not c <= 0 <= d):
            corners = (a * c, a * d, b * c, b * d) if infix == "*" else (a / c, a / d, b / c, b / d)
            low, high = min(corners), max(corners)
        elif infix == "**" and a > 0:  # y*ln(x) is bilinear in (y, ln x): the extremes lie at the corners
            corners = (a**c, a**d, b**c, b**d)
            low, high = min(corners) * (1 - 1e-12), max(corners) * (1 + 1e-12)  # pow is not exactly rounded
        else:
            return None
    except (ArithmeticError, ValueError):
        return None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return math.nextafter(low, -math.inf), math.nextafter(high, math.inf)


def _surely_different(first: _Expression, second: _Expression) -> bool:
    """True when simplify cannot make the two equal: a comparison (a relational or boolean) against
    arithmetic (an expression); values whose bounds are disjoint (simplify keeps an expression's value);
    comparisons that are surely true and surely false at the same point."""
    if _is_comparison(first) != _is_comparison(second):
        return ">" not in (second if _is_comparison(first) else first).text
    if first.bounds is None or second.bounds is None:
        return False
    if _is_comparison(first):
        return _truth(first.bounds) * _truth(second.bounds) == -1
    return first.bounds[1] < second.bounds[0] or second.bounds[1] < first.bounds[0]


def _truth(difference: Bounds) -> int:
    """1 if ``left > right`` surely holds, -1 if it surely fails, 0 if unsure."""
    return 1 if difference[0] > 0 else -1 if difference[1] < 0 else 0


@cache
def _simplified(expression: str) -> object | None:
    """``sympy.simplify(expression, evaluate=False)`` as official calls it, memoised; None if sympy fails."""
    from sympy import simplify  # imported on first use: most comparisons never need it

    try:
        return simplify(expression, evaluate=False)
    except Exception:  # noqa: BLE001 - official treats any failure on the predicted side as "not equal"
        return None
