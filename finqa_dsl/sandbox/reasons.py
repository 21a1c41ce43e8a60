"""Why a sandboxed program has no value: the one list, shared by the parent and the worker (stdlib only)."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A program's failure, with ``SandboxResult.detail`` saying more where noted."""

    SYNTAX_ERROR = "syntax_error"  # the code does not compile (detail: the error's message)
    EXCEPTION = "exception"  # an uncaught exception (detail: its type name, e.g. "ZeroDivisionError")
    TIMEOUT = "timeout"  # past the wall-clock deadline or the CPU-time limit
    MEMORY = "memory"  # MemoryError under the address-space limit
    NO_ANS = "no_ans"  # finished without a global ``ans``
    NON_NUMERIC_ANS = "non_numeric_ans"  # ``ans`` is not a number, bool or short string (detail: its type)
    OUTPUT_LIMIT = "output_limit"  # printed more than the output cap (stopped there)
    FORBIDDEN = "forbidden"  # tried something refused: a module, a builtin, an audited operation (detail: what)
    EXITED = "exited"  # sys.exit / os._exit before finishing (detail: the exit code)
    CRASHED = "crashed"  # the program's process died of a signal (detail: its name), or sent no usable result
    WORKER_DIED = "worker_died"  # the worker process itself died or hung; it was replaced
