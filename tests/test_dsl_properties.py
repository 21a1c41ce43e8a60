"""Property-based tests of the DSL: nothing raises, pathological programs take bounded work, and the sympy-free
fast paths of program equivalence agree with sympy itself."""

from __future__ import annotations

import re
import sys
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finqa_dsl.core.dsl import OPERATIONS, Execution, Reason, clean_generation, execute, programs_equivalent, tokenize

TABLE = (("", "2019", "2018"), ("revenue", "$ 1,234", "( 12 )"), ("costs", "5.5%", "-3 ( 3 )"))
SEEDS = (
    "subtract(5829, 5735), divide(#0, 5735)",
    "table_max(revenue, none), table_min(costs, none), subtract(#0, #1)",
    "greater(5%, const_m1), exp(1.05, const_3)",
    "add(1, 2), multiply(#0, const_100), divide(#1, #0), table_average(costs, none)",
)
DSL_ALPHABET = "adivultrbecngxphms_0123456789#%$,.() -|EOF\n<>/"
LITERALS = ("5", "7.5", "const_100", "3%", "12")
ARITHMETIC = ("add", "subtract", "multiply", "divide")

STEP = re.compile(r"(\w+)\(([^,]+), ([^)]+)\)")

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def never_raises(program) -> None:
    execution = execute(program, TABLE)
    assert isinstance(execution, Execution)
    assert execution.ok == (execution.reason is None)
    for gold in SEEDS:
        assert programs_equivalent(gold, program) in (True, False)
        assert programs_equivalent(program, gold) in (True, False)


@fast
@given(st.text(max_size=120))
def test_random_text_never_raises(text):
    assert tokenize(text)[-1] == "EOF"
    never_raises(text)
    never_raises(clean_generation(text))


@fast
@given(st.text(alphabet=DSL_ALPHABET, max_size=150))
def test_dsl_like_text_never_raises(text):
    never_raises(text)


@fast
@given(st.lists(st.one_of(st.sampled_from([f"{op}(" for op in OPERATIONS] + [")", "EOF", "#0", "#1", "none",
                                                                          "revenue", "5", "(", "add"]),
                          st.text(max_size=8)), max_size=20))
def test_random_token_lists_never_raise(tokens):
    never_raises(tokens)


@st.composite
def mutated_programs(draw):
    program = list(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(program)))
        action = draw(st.sampled_from(("insert", "delete", "replace")))
        character = draw(st.sampled_from(DSL_ALPHABET))
        if action == "insert":
            program.insert(position, character)
        elif program and position < len(program):
            program[position:position + 1] = [character] if action == "replace" else []
    return "".join(program)


@fast
@given(mutated_programs())
def test_mutated_programs_never_raise(program):
    never_raises(program)


@st.composite
def arithmetic_programs(draw, literals=LITERALS, max_steps=5, operations=ARITHMETIC,
                        last_operations=ARITHMETIC):
    steps = []
    count = draw(st.integers(1, max_steps))
    for index in range(count):
        args = [draw(st.sampled_from(literals)) if index == 0 or draw(st.booleans())
                else f"#{draw(st.integers(0, index - 1))}" for _ in range(2)]
        operation = draw(st.sampled_from(last_operations if index == count - 1 else operations))
        steps.append(f"{operation}({args[0]}, {args[1]})")
    return ", ".join(steps)


@fast
@given(arithmetic_programs())
def test_a_program_is_equivalent_to_itself_and_to_its_commuted_form(program):
    assert programs_equivalent(program, program)
    commuted = ", ".join(f"{op}({b}, {a})" if op in ("add", "multiply") else f"{op}({a}, {b})"
                         for op, a, b in STEP.findall(program))
    assert programs_equivalent(program, commuted)


def _official_text(program: str, symbols: dict[str, str]) -> str:
    """The infix text official builds for the last step of a well-formed arithmetic program."""
    infix = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "exp": "**", "greater": ">"}
    texts: list[str] = []
    for op, *args in STEP.findall(program):
        parts = [texts[int(arg[1:])] if arg.startswith("#") else symbols.setdefault(arg, f"a{len(symbols)}")
                 for arg in args]
        texts.append(f"( {parts[0]} {infix[op]} {parts[1]} )")
    return texts[-1]


SMALL = {"literals": ("5", "7", "9"), "max_steps": 4, "operations": (*ARITHMETIC, *ARITHMETIC, "exp")}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arithmetic_programs(**SMALL, last_operations=SMALL["operations"]),
       arithmetic_programs(**SMALL, last_operations=(*SMALL["operations"], "greater")))
def test_equivalence_agrees_with_sympy_simplify(gold, predicted):
    from sympy import simplify

    symbols: dict[str, str] = {}
    gold_form = simplify(_official_text(gold, symbols), evaluate=False)
    literals = [arg for _, *args in STEP.findall(predicted) for arg in args if not arg.startswith("#")]
    if any(literal not in symbols for literal in literals):
        assert not programs_equivalent(gold, predicted)
        return
    predicted_form = simplify(_official_text(predicted, symbols), evaluate=False)
    assert programs_equivalent(gold, predicted) is (gold_form == predicted_form)


def _finishes_fast(function, *args):
    """``function(*args)``, asserting that its work is linear in the steps of the program(s) it is given: at most
    64 Python and C calls per step (plus 1,000), and at most 8 MiB of memory at its peak (a huge integer power or
    an expression blown up by repeated doubling would take far more). Work, not seconds: a loaded machine cannot
    fail it and a regression cannot hide behind a fast one."""
    steps = sum(arg.count("(") for arg in args if isinstance(arg, str))
    calls = 0

    def count(_frame, event, _arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    tracemalloc.start()
    sys.setprofile(count)
    try:
        result = function(*args)
    finally:
        sys.setprofile(None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert calls <= 64 * steps + 1000, f"{calls} calls for {steps} steps"
    assert peak <= 8 * 2**20, f"{peak} bytes at the peak"
    return result


def test_pathological_programs_take_work_linear_in_their_steps():
    assert _finishes_fast(execute, "exp(10, 1000000)", ()).reason is Reason.OVERFLOW
    assert _finishes_fast(execute, "exp(const_1000000000, const_1000000000)", ()).reason is Reason.OVERFLOW
    chain = ", ".join(["add(1, 1)"] + [f"add(#{k}, 1)" for k in range(4999)])
    assert _finishes_fast(execute, chain, ()) == Execution(5001.0)
    assert _finishes_fast(programs_equivalent, "add(1, 1)", chain) is False
    doubling = ", ".join(["add(1, 1)"] + [f"add(#{k}, #{k})" for k in range(3000)])
    assert _finishes_fast(execute, doubling, ()) == Execution(float("inf"))  # inf, as official
    assert _finishes_fast(programs_equivalent, doubling, doubling) is False  # expression beyond the size cap
    assert _finishes_fast(programs_equivalent, "add(1, 1)", doubling) is False
    text_doubling = ", ".join(["greater(1, 2)"] + [f"add(#{k}, #{k})" for k in range(3000)])
    assert _finishes_fast(execute, text_doubling, ()).reason is Reason.OVERFLOW
    many_tables = ", ".join(["table_min(costs, none)"] * 3000)
    assert _finishes_fast(execute, many_tables, TABLE) == Execution(-3.0)
