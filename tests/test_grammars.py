"""The grammars of well-formed answers (``--constrained_decoding``), checked by llguidance walking real tokens of
the default model's tokenizer: every real FinQA gold program is in its example's grammar, and every program the
DSL would refuse as malformed, an unknown operation, empty or a bad reference is not.
"""

from __future__ import annotations

import llguidance
import llguidance.hf
import pytest

from finqa_dsl.core import dsl
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.grammars import MAX_STEPS, number_grammar, program_grammar, referable_rows

TABLE = [["", "2015", "2014"], ["2014 net revenue", "$ 5735", "1"], ["( in millions )", "1", "2"],
         ['a "quoted" \\ row', "1", "2"], ["cash, end of year", "3", "4"], ["$ in millions", "2015", "n/a"]]


@pytest.fixture(scope="module")
def accepts(default_tokenizer):
    tokenizer = llguidance.hf.from_tokenizer(default_tokenizer)

    def accepted(grammar: str, text: str) -> bool:
        matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar))
        assert not matcher.is_error(), matcher.get_error()
        ids = default_tokenizer(text, add_special_tokens=False)["input_ids"]
        return matcher.consume_tokens(ids) and matcher.is_accepting()

    return accepted


@pytest.mark.parametrize("split", ["train.json", "dev.json", "dev_convfinqa_derived.json", "test.json"])
def test_every_real_gold_program_is_in_its_examples_grammar(accepts, real_finqa_dir, split):
    examples = load_examples(real_finqa_dir / split)
    refused = [example.id for example in examples if not accepts(program_grammar(example.table), example.program)]
    assert len(examples) > 100 and refused == []


@pytest.mark.parametrize("program", [
    "subtract(5829, 5735), divide(#0, 5735)",
    "add(const_100, 1,234.5), multiply(#0, 23.6%)",
    "add(.45, -.3%), exp(#0, const_m1), greater(#1, -1,234,567.25)",
    "table_sum(2014 net revenue, none), divide(#0, const_2)",
    'table_max(a "quoted" \\ row, none)',
    "table_sum(2014 net revenue, 2014 net revenue)",  # official ignores a table step's second argument
])
def test_well_formed_programs_are_accepted(accepts, program):
    assert accepts(program_grammar(TABLE), program)
    assert dsl.execute(program, TABLE).reason not in (dsl.Reason.MALFORMED, dsl.Reason.UNKNOWN_OP, dsl.Reason.EMPTY,
                                                      dsl.Reason.BAD_REFERENCE)


@pytest.mark.parametrize(("program", "reason"), [
    ("add(1,2)", dsl.Reason.MALFORMED),  # official splits arguments on ", " only
    ("add(1, 2", None),  # unfinished: a prefix, never complete
    ("sum(1, 2)", dsl.Reason.UNKNOWN_OP),
    ("", dsl.Reason.EMPTY),
    ("divide(#0, 5735)", dsl.Reason.BAD_REFERENCE),
    ("add(1, 2), add(#1, 2)", dsl.Reason.BAD_REFERENCE),
    ("table_sum(#0, none)", dsl.Reason.BAD_REFERENCE),
    ("table_sum(2013 net revenue, none)", dsl.Reason.MISSING_ROW),  # not a row of this table
    ("table_sum($ in millions, none)", dsl.Reason.NON_NUMERIC),  # a row that holds text
    ("add(1737,161, 2)", None),  # a thousands group after four digits is not how FinQA writes a number
    ("add(12,133,123,123,123,123, 1)", None),  # numbers end: at most 4 thousands groups, 12 digits, 6 decimals
    ("add(1234567890123, 1)", None),
    ("add(1, 2),", None),
])
def test_programs_the_dsl_cannot_run_are_refused(accepts, program, reason):
    assert not accepts(program_grammar(TABLE), program)
    if reason is not None:
        assert dsl.execute(program, TABLE).reason == reason


def test_rows_the_dsl_cannot_read_back_are_left_out():
    # no "(", ")" or ", " inside, numbers in every cell
    assert referable_rows(TABLE) == ["2014 net revenue", 'a "quoted" \\ row']
    assert "TABLE_OPERATION" not in program_grammar([]), "no table: no table operation"


def test_the_grammar_follows_the_dsls_operation_table(accepts, monkeypatch):
    for operation in dsl.ARITHMETIC:
        assert accepts(program_grammar(TABLE), f"{operation}(1, 2)")
    for operation in dsl.TABLE_OPERATIONS:
        assert accepts(program_grammar(TABLE), f"{operation}(2014 net revenue, none)")
    monkeypatch.setitem(dsl.ARITHMETIC, "modulo", lambda a, b: a % b)
    assert accepts(program_grammar(TABLE), "modulo(7, 2)")


def test_programs_have_at_most_max_steps(accepts):
    steps = [f"add(#{k - 1}, 1)" if k else "add(1, 1)" for k in range(MAX_STEPS + 1)]
    assert accepts(program_grammar(), ", ".join(steps[:MAX_STEPS]))
    assert not accepts(program_grammar(), ", ".join(steps))


@pytest.mark.parametrize(("answer", "ok"), [("0.145", True), ("-12", True), ("yes", True), ("14.5%", False),
                                            ("$ 193 million", False), ("", False)])
def test_number_grammar(accepts, answer, ok):
    assert accepts(number_grammar(), answer) is ok
