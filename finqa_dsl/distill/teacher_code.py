"""Teacher code generation: each example's question -> a teacher's Python -> executed in the sandbox -> one row.

Rows stream to a JSONL file (flushed line by line) as replies arrive, so a run killed at any point loses
nothing written; a rerun skips every id that already has a teacher reply and retries those whose request
failed (:class:`~finqa_dsl.core.io.ResumableJsonl`). :func:`write_teacher_csv` then writes the CSV with the study's
columns (``prompt``, ``generated_code``, ``actual_answer``, ``expected_answer``) plus ``id``, the failure reason,
and per request the teacher's failure (``teacher_error``: ``http_<status>``, ``timeout``, ``length``, ... with the
server's message in ``teacher_message``), the tokens in, out and spent reasoning (where the reply reports them),
the finish reason and the seconds it took; one row per id (its first good row, else its latest attempt).

Teachers: ``openai`` (any OpenAI-compatible chat endpoint, :mod:`finqa_dsl.distill.chat_client`), ``hf`` (a
local model through the project's batched generation) and ``gold-program`` (the gold program transpiled,
:mod:`finqa_dsl.core.gold_transpiler`: correct by construction, no model).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import Example
from finqa_dsl.core.finqa_csv import COLUMNS as FINQA_COLUMNS
from finqa_dsl.core.finqa_csv import record_row
from finqa_dsl.core.gold_transpiler import TranspileError, transpile
from finqa_dsl.core.io import ResumableJsonl, atomic_write_text
from finqa_dsl.core.python_code import NO_CODE, extract_code
from finqa_dsl.core.targets import canonical_number
from finqa_dsl.distill.chat_client import ChatReply, ChatRequest, ChatTotals, Endpoint, ask_all
from finqa_dsl.distill.teacher_prompt import SolvedShot, teacher_messages

logger = logging.getLogger(__name__)

TEACHERS = ("openai", "hf", "gold-program")
# The teacher's columns; the CSV also carries the example's own (finqa_csv.COLUMNS) so that the filtered CSV is
# a training file for the driver's code target (``--train_file filtered.csv``).
TEACHER_COLUMNS = ("prompt", "generated_code", "actual_answer", "expected_answer", "failure_reason",
                   "failure_detail", "teacher_error", "teacher_message", "prompt_tokens", "completion_tokens",
                   "reasoning_tokens", "finish_reason", "seconds")
CSV_COLUMNS = (*FINQA_COLUMNS, *TEACHER_COLUMNS)


@dataclass(frozen=True)
class TeacherSummary:
    examples: int
    resumed: int  # ids already answered in the output file before this run
    asked: int  # ids this run had to ask
    sent: int  # requests that ended (a reply or a named failure) in this run; fewer than asked when aborted
    failed: int  # of those sent, the failed ones
    teacher_errors: int  # ids of the file whose latest request failed (retried on a rerun)
    teacher_errors_by_kind: dict[str, int]  # over the file: http_400 / timeout / length / ... -> count
    teacher_messages: dict[str, str]  # kind -> a message the server (or client) gave for it
    aborted: str | None  # why the run stopped sending before the end, when it did
    failure_reasons: dict[str, int]  # over every answered id: reason -> count ("ok" for a value)
    prompt_tokens: int  # this run's requests
    completion_tokens: int
    reasoning_tokens: int
    seconds: float  # summed over this run's requests (they overlap when concurrent)

    @property
    def failure_rate(self) -> float:
        """Ids of the file without a teacher reply, over the examples."""
        return self.teacher_errors / self.examples if self.examples else 0.0

    def tokens_per_request(self) -> dict[str, float]:
        """The mean tokens of this run's requests (the totals are fields): a trial's cost per example, to price the
        full run. Completion tokens include the reasoning tokens, as the usage reports them."""
        per = max(self.sent, 1)
        return {"prompt": round(self.prompt_tokens / per, 1), "completion": round(self.completion_tokens / per, 1),
                "reasoning": round(self.reasoning_tokens / per, 1)}


def choose_shots(examples: Sequence[Example], k: int, seed: int = 0) -> list[SolvedShot]:
    """``k`` solved shots in a fixed pseudo-random order (sha256 of seed:id), each with its gold program
    transpiled to Python; examples whose program cannot be transpiled are passed over."""
    shots: list[SolvedShot] = []
    for example in sorted(examples, key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).digest()):
        if len(shots) == k:
            break
        try:
            shots.append(SolvedShot(example, transpile(example)))
        except TranspileError:
            continue
    return shots


def teacher_rows(path: str | os.PathLike) -> ResumableJsonl:
    """The streamed teacher rows of ``path``: an id is finished when it has a teacher reply (a failed request
    does not count: a rerun retries it, and its newer row replaces the failed one)."""
    return ResumableJsonl(path, good=lambda row: row.get("teacher_error") is None)


def generate_teacher_code(examples: Sequence[Example], output_path: str | os.PathLike, *, teacher: str,
                          sandbox, shots: Sequence[SolvedShot] = (), hint: bool = True,
                          context_config: ContextConfig | None = None, endpoint: Endpoint | None = None,
                          local_generate: Callable[[Sequence[Any]], Any] | None = None) -> TeacherSummary:
    """Ask ``teacher`` for every example not yet answered in ``output_path`` and append one row per reply.

    ``local_generate`` (teacher ``hf``) maps :class:`ChatRequest` to :class:`ChatReply` (e.g.
    :class:`~finqa_dsl.distill.local_teacher.LocalTeacher`); ``endpoint`` (teacher ``openai``) says where to ask."""
    if teacher not in TEACHERS:
        raise ValueError(f"teacher {teacher!r} is not one of {TEACHERS}")
    config = context_config or ContextConfig(input_mode="all")
    stream = teacher_rows(output_path)
    todo = stream.pending(examples)
    by_id = {example.id: example for example in todo}
    messages = {example.id: teacher_messages(example, shots, config, hint=hint) for example in todo}
    logger.info("teacher %s: %d examples, %d already answered, %d to ask", teacher, len(examples),
                len(examples) - len(todo), len(todo))
    totals = ChatTotals()
    with stream.appender() as appender:

        def write(reply: ChatReply) -> None:
            example = by_id[reply.id]
            row = _row(example, messages[reply.id], reply, sandbox)
            appender.write(row)
            totals.add(reply)

        if teacher == "gold-program":
            for example in todo:
                write(_gold_reply(example))
        elif teacher == "openai":
            if endpoint is None:
                raise ValueError("the openai teacher needs an endpoint")
            totals.aborted = ask_all([ChatRequest(example.id, messages[example.id]) for example in todo], endpoint,
                                     write).aborted
        else:
            for reply in local_generate([ChatRequest(example.id, messages[example.id]) for example in todo]):
                write(reply)
    wanted = {example.id for example in examples}
    rows = [row for row in stream.kept_rows().values() if row["id"] in wanted]
    reasons = Counter(row["failure_reason"] or "ok" for row in rows if row["teacher_error"] is None)
    errors = Counter(row["teacher_error"] for row in rows if row["teacher_error"] is not None)
    messages_by_kind: dict[str, str] = {}
    for row in rows:
        if row["teacher_error"] is not None:
            messages_by_kind.setdefault(row["teacher_error"], row.get("teacher_message") or "")
    return TeacherSummary(
        examples=len(examples), resumed=len(examples) - len(todo), asked=len(todo),
        sent=totals.replies + totals.failures, failed=totals.failures, teacher_errors=sum(errors.values()),
        teacher_errors_by_kind=dict(sorted(errors.items())), teacher_messages=dict(sorted(messages_by_kind.items())),
        aborted=totals.aborted, failure_reasons=dict(sorted(reasons.items())), prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens, reasoning_tokens=totals.reasoning_tokens,
        seconds=round(totals.seconds, 3))


def _gold_reply(example: Example) -> ChatReply:
    try:
        return ChatReply(example.id, transpile(example), None)
    except TranspileError as error:
        return ChatReply(example.id, f"# {error}", None)


def _row(example: Example, messages: list[dict], reply: ChatReply, sandbox) -> dict[str, Any]:
    code = extract_code(reply.text) if reply.error is None else None
    result = sandbox.run(code) if code is not None else None
    if reply.error is not None:
        reason, detail = None, ""
    elif result is None:
        reason, detail = NO_CODE, ""
    else:
        reason, detail = (str(result.reason) if result.reason else None), result.detail
    return {"id": example.id, "prompt": messages[-1]["content"], "generated_code": code,
            "actual_answer": result.value if result is not None else None,
            "expected_answer": canonical_number(example.exe_ans), "failure_reason": reason, "failure_detail": detail,
            "teacher_error": reply.error, "teacher_message": reply.message or None, "reply": reply.text,
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "reasoning_tokens": reply.reasoning_tokens, "finish_reason": reply.finish_reason,
            "seconds": round(reply.seconds, 3)}


def write_teacher_csv(jsonl_path: str | os.PathLike, csv_path: str | os.PathLike,
                      examples: Sequence[Example]) -> int:
    """Write the CSV (atomically) from the streamed rows: one row per answered example, in ``examples`` order,
    with the example's FinQA columns; returns the row count."""
    rows = teacher_rows(jsonl_path).kept_rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    written = 0
    for index, example in enumerate(examples):
        if example.id not in rows:
            continue
        teacher = {key: "" if rows[example.id].get(key) is None else rows[example.id][key] for key in TEACHER_COLUMNS}
        writer.writerow({**record_row(example.raw, index, example.source), **teacher})
        written += 1
    atomic_write_text(csv_path, buffer.getvalue())
    return written
