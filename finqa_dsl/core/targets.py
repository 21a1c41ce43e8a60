"""What each target is, in one registry (:data:`TARGETS`): its instruction, the gold text a model learns to
write, how a generation is read, executed and scored, and how scored rows are summed up.

Every entry point asks :func:`get_target` for the ``--target_field`` it was given and compares no target names
itself; adding a target is one entry here. A target whose predictions are code (:attr:`Target.needs_sandbox`)
is scored from the :class:`~finqa_dsl.core.python_code.CodeExecution` of its code, run by the caller in the
sandbox (:func:`finqa_dsl.sandbox.generations.code_runner`): this module runs no generated code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finqa_dsl.core import metrics as m
from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core.data import CODE_COLUMN, DatasetError, Example
from finqa_dsl.core.dsl import END_OF_TURN_MARKERS, clean_generation, execute, tokenize
from finqa_dsl.core.gold_transpiler import TranspileError, transpile
from finqa_dsl.core.grammars import number_grammar, program_grammar
from finqa_dsl.core.python_code import CodeExecution, extract_code, fenced
from finqa_dsl.core.voting import sample_of, self_consistency_metrics

_TASK = "You answer questions about a company's financial report, using the context given with the question."


@dataclass(frozen=True)
class Target:
    """One kind of answer a model is taught to write, and how it is scored."""

    name: str
    instruction: str  # the built-in task instruction of its prompts
    gold_text: Callable[[Example], str]  # what the model learns to write for an example
    parse: Callable[[str], str | None]  # the prediction a generation holds (None: none found)
    gold_value: Callable[[Example], float | str | None]  # what a prediction is compared with; None: not scorable
    _score: Callable[[str, Example, CodeExecution | None], dict[str, Any]]
    _summarize: Callable[[list[Mapping[str, Any]]], dict[str, Any]]
    _execute_alone: Callable[[str, CodeExecution | None], dict[str, Any]]
    needs_sandbox: bool = False  # its predictions are code, executed in the sandbox
    stop_strings: tuple[str, ...] = END_OF_TURN_MARKERS  # after these nothing parsed changes (inference.stopping)
    grammar: Callable[[Example], str] | None = None  # the Lark grammar of its well-formed answers to an example

    def score(self, generation: str, example: Example, execution: CodeExecution | None = None) -> dict[str, Any]:
        """The score fields of one generation (JSON-ready), ``failure_reason`` included. A code prediction needs
        the ``execution`` of its code."""
        if self.needs_sandbox and execution is None:
            raise ValueError(f"a {self.name} prediction is scored from its execution: run it in the sandbox first")
        return self._score(generation, example, execution)

    def row_fields(self, generation: str, example: Example, target_text: str,
                   execution: CodeExecution | None = None) -> dict[str, Any]:
        """What a predictions row carries beside the generation: the target, the parsed prediction, the gold
        and the scores. ``target_text`` is the gold text the model was taught to write."""
        return {row_keys.TARGET_FIELD: self.name, row_keys.PARSED_PREDICTION: self.parse(generation),
                row_keys.TARGET: target_text, row_keys.GOLD_PROGRAM: example.program,
                row_keys.GOLD_EXE_ANS: example.exe_ans, row_keys.GOLD_ANSWER: example.answer,
                **self.score(generation, example, execution)}

    def execute_alone(self, generation: str, execution: CodeExecution | None = None) -> dict[str, Any]:
        """What running a generation gives without a gold to score it against (a free question): the executed
        value and error, or nothing for a target that is not executed."""
        if self.needs_sandbox and execution is None:
            raise ValueError(f"a {self.name} prediction is executed in the sandbox: run it there first")
        return self._execute_alone(generation, execution)

    def summarize(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Counts and accuracies over scored rows; every metric the other targets have is None. Rows that an
        earlier version wrote are read with today's keys."""
        rows = [m.with_current_keys(row) for row in rows]
        every = dict.fromkeys((m.EXECUTION_CORRECT, m.PROGRAM_CORRECT, m.EXECUTION_ACCURACY, m.PROGRAM_ACCURACY))
        return {m.TARGET_FIELD: self.name, m.N: len(rows), **every, **self._summarize(rows)}


def canonical_number(value: float | str) -> str:
    """exe_ans as plain decimal text: 94.0 -> '94', 1e-05 -> '0.00001'; 'yes'/'no' unchanged."""
    if isinstance(value, str):
        return value
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _program_text(example: Example) -> str:
    if not example.program:
        raise DatasetError.for_field(example.source, example.id, "qa.program",
                                     "a program, required by target_field 'program' (a teacher CSV row has code only)")
    return example.program


def _answer_text(example: Example) -> str:
    if example.answer is None:
        raise DatasetError.for_field(example.source, example.id, "qa.answer",
                                     "an answer, required by target_field 'answer'")
    return example.answer


def _code_text(example: Example) -> str:
    """The example's teacher code (``generated_code`` of a teacher CSV), else its gold program transpiled."""
    code = example.raw.get(CODE_COLUMN)
    if not code:
        try:
            code = transpile(example)
        except TranspileError as error:
            raise DatasetError.for_field(example.source, example.id, CODE_COLUMN, "teacher code, and the gold "
                                         f"program cannot stand in for it ({error})") from None
    return fenced(code)


def _score_program(generation: str, example: Example, _execution) -> dict[str, Any]:
    row = m.score_program_prediction(generation, example).as_row()
    return {**row, m.FAILURE_REASON: row[m.EXECUTION_ERROR] or (None if row[m.EXECUTION_CORRECT] else m.WRONG_VALUE)}


def _answer_target(name: str, instruction: str, *, gold_text: Callable[[Example], str],
                   gold_value: Callable[[Example], float | str | None],
                   grammar: Callable[[Example], str] | None = None) -> Target:
    """A target whose prediction is a final answer, matched strictly and tolerantly to ``gold_value``."""

    def score(generation: str, example: Example, _execution) -> dict[str, Any]:
        row = m.score_answer_prediction(generation, gold_value(example)).as_row()
        failed = None if row[m.ANSWER_CORRECT_TOLERANT] else \
            m.UNPARSEABLE if row[m.PREDICTED_VALUE] is None else m.WRONG_VALUE
        return {**row, m.FAILURE_REASON: failed}

    return Target(name=name, instruction=instruction, gold_text=gold_text, parse=str.strip, gold_value=gold_value,
                  grammar=grammar, _score=score, _execute_alone=lambda generation, execution: {},
                  _summarize=lambda rows: _accuracies(rows, _STRICT, _TOLERANT))


def _score_code(_generation: str, example: Example, execution: CodeExecution) -> dict[str, Any]:
    return m.score_code_prediction(execution, example)


def _errors(rows: list[Mapping[str, Any]]) -> dict[str, int]:
    errors = Counter(row[m.EXECUTION_ERROR] for row in rows if row[m.EXECUTION_ERROR] is not None)
    return {m.EXECUTION_ERRORS: dict(sorted(errors.items()))}


def _accuracies(rows: list[Mapping[str, Any]], *pairs: tuple[str, str]) -> dict[str, Any]:
    """``correct key -> count`` and ``accuracy key -> ratio`` for each (correct, accuracy) pair."""
    summary: dict[str, Any] = {}
    for correct, accuracy in pairs:
        count = m.count_true(rows, correct)
        summary.update({correct: count, accuracy: count / len(rows) if rows else None})
    return summary


_EXECUTION = (m.EXECUTION_CORRECT, m.EXECUTION_ACCURACY)
_PROGRAM = (m.PROGRAM_CORRECT, m.PROGRAM_ACCURACY)
_STRICT = (m.ANSWER_CORRECT_STRICT, m.ANSWER_ACCURACY_STRICT)
_TOLERANT = (m.ANSWER_CORRECT_TOLERANT, m.ANSWER_ACCURACY_TOLERANT)
_ABS_1E3 = (m.ANSWER_CORRECT_ABS_1E3, m.ANSWER_ACCURACY_ABS_1E3)


def _run_program(generation: str, _execution) -> dict[str, Any]:
    result = execute(tokenize(clean_generation(generation)), ())
    return {m.EXECUTED_VALUE: result.value, m.EXECUTION_ERROR: result.reason}


def _code_result(_generation: str, execution: CodeExecution) -> dict[str, Any]:
    return {m.EXECUTED_VALUE: execution.value, m.EXECUTION_ERROR: execution.reason}


def _exe_ans(example: Example) -> float | str:
    return example.exe_ans


def _answer(example: Example) -> str | None:
    return example.answer


TARGETS: dict[str, Target] = {target.name: target for target in (
    Target(
        name="program",
        instruction=(
            f"{_TASK} Write a FinQA program that computes the answer: steps op(arg1, arg2) separated by "
            '", ", all on one line.\n'
            "Operations: add, subtract, multiply, divide; exp(a, b) is a to the power b; greater(a, b) is "
            "yes if a > b, else no; table_max, table_min, table_sum, table_average(row name, none) work on "
            "the numbers of a table row, named exactly as the first cell of that row.\n"
            "Arguments: numbers copied from the context without '$' (a percentage keeps its '%', e.g. 23.6%); "
            "#N, the result of step N (counting from 0); constants const_m1 (-1) and const_N for the number N "
            "(const_1, const_2, const_100, const_1000, ...).\n"
            "Reply with the program only, e.g. subtract(5829, 5735), divide(#0, 5735)"
        ),
        gold_text=_program_text, parse=clean_generation, gold_value=_exe_ans,
        grammar=lambda example: program_grammar(example.table), _score=_score_program, _execute_alone=_run_program,
        _summarize=lambda rows: {**_accuracies(rows, _EXECUTION, _PROGRAM), **_errors(rows)},
    ),
    _answer_target(
        "numerical",
        f"{_TASK} Reply with the result as a plain number only: no units, '$', '%' or words; a percentage as a "
        "fraction (14.5% is 0.145), at most 5 decimals; yes or no for a comparison.",
        gold_text=lambda example: canonical_number(example.exe_ans), gold_value=_exe_ans,
        grammar=lambda example: number_grammar(),
    ),
    _answer_target(
        "answer",
        f"{_TASK} Reply with the final answer only, written as in a financial report "
        "(e.g. 14.5%, $ 193 million, 41932, yes).",
        gold_text=_answer_text, gold_value=_answer,
    ),
    Target(
        name="code",
        instruction=(
            f"{_TASK} Write Python that computes the answer: assign each number you take from the context to a "
            "variable with a meaningful name, compute step by step, and put the final result in a variable "
            "named `ans` (a number, a percentage as a fraction such as 0.145, or True/False for a yes/no "
            "question). No imports, no printing. Reply with the code only, in one ```python fenced block."
        ),
        gold_text=_code_text, parse=extract_code, gold_value=_exe_ans, needs_sandbox=True,
        _score=_score_code, _execute_alone=_code_result,
        _summarize=lambda rows: {**_accuracies(rows, _EXECUTION, _TOLERANT, _ABS_1E3), **_errors(rows)},
    ),
)}
TARGET_FIELDS = tuple(TARGETS)


def get_target(name: str) -> Target:
    """The registered target called ``name``; ValueError naming the choices for any other name."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"target_field must be one of {', '.join(TARGETS)}, got {name!r}") from None


def score_predictions(predictions: Iterable[tuple[str, str] | tuple[str, str, Mapping[str, Any]]],
                      examples: Iterable[Example], target_name: str,
                      run_code: Callable[[list[str]], list[CodeExecution]] | None = None) -> dict[str, Any]:
    """Join ``(id, prediction text)`` pairs (or ``(id, text, {"sample": k, "logprob": x})`` of a run with
    several samples per example) to gold examples by id, score and summarize them (with samples: sample 0's
    accuracies beside the vote's and the oracle's, :func:`~finqa_dsl.core.voting.self_consistency_metrics`).

    Ids absent from the gold are left out and counted (``n_left_out``), as are examples without the gold
    value (``n_missing_gold``). Every joined prediction counts, duplicates included, as official does;
    ``n_duplicate_ids`` says how many predictions repeat an earlier one's id (and sample). ``run_code`` (a target
    that needs the sandbox) runs the generations' code and returns one execution per generation.
    """
    chosen = get_target(target_name)
    if chosen.needs_sandbox and run_code is None:
        raise ValueError(f"scoring {chosen.name} predictions needs run_code (e.g. the sandbox)")
    by_id = {example.id: example for example in examples}
    joined, left_out, missing_gold, seen, duplicates = [], 0, 0, set(), 0
    for example_id, prediction, *extra in predictions:
        sample = {row_keys.ID: example_id, **(extra[0] if extra else {})}
        key = (example_id, sample_of(sample))
        duplicates += key in seen
        seen.add(key)
        example = by_id.get(example_id)
        if example is None:
            left_out += 1
        elif chosen.gold_value(example) is None:
            missing_gold += 1
        else:
            joined.append((prediction, example, sample))
    executions = run_code([prediction for prediction, *_ in joined]) if chosen.needs_sandbox \
        else [None] * len(joined)
    rows = [{**sample, **chosen.score(prediction, example, execution)}
            for (prediction, example, sample), execution in zip(joined, executions, strict=True)]
    return {**self_consistency_metrics(rows, chosen.summarize), m.N_LEFT_OUT: left_out,
            m.N_MISSING_GOLD: missing_gold, m.N_DUPLICATE_IDS: duplicates}
