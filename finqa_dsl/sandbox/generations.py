"""Run the code of model generations (the ``code`` target) in a sandbox: one :class:`CodeExecution` each."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from finqa_dsl.core.python_code import CodeExecution, extract_code
from finqa_dsl.core.targets import Target
from finqa_dsl.sandbox.pool import Sandbox

CodeRunner = Callable[[Sequence[str]], list[CodeExecution]]


@contextlib.contextmanager
def code_runner(target: Target) -> Iterator[CodeRunner | None]:
    """For a target that needs the sandbox, a function running generations' code in a fresh one (closed on
    exit); None for any other target."""
    if not target.needs_sandbox:
        yield None
        return
    with Sandbox() as sandbox:
        yield partial(execute_generations, sandbox)


def execute_generations(sandbox: Sandbox, generations: Sequence[str]) -> list[CodeExecution]:
    """The code of each generation (:func:`~finqa_dsl.core.python_code.extract_code`) run in ``sandbox``; a
    generation without code gets ``CodeExecution(code=None)``."""
    codes = [extract_code(generation) for generation in generations]
    results = iter(sandbox.run_many([code for code in codes if code is not None]))
    executions = []
    for code in codes:
        if code is None:
            executions.append(CodeExecution(None))
            continue
        result = next(results)
        executions.append(CodeExecution(code, result.value, result.reason and str(result.reason), result.detail))
    return executions
