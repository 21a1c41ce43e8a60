"""Run generated Python programs in a pool of isolated worker processes; each gets a value or a reason.

    with Sandbox(workers=2, timeout_s=2.0) as sandbox:
        results = sandbox.run_many(["a = 3\\nans = a / 4", "ans = 1 / 0"])
    results[0].value == 0.75; results[1].reason is Reason.EXCEPTION; results[1].detail == "ZeroDivisionError"

The parent only starts workers (``python -I -S worker.py``: no site-packages, no environment variables, cwd a
throwaway directory removed on close, their own session), sends code and reads back plain JSON: nothing the
program made is ever unpickled here. A worker runs each program in a forked child under limits and a deadline
(see worker.py); if a worker itself dies or stops answering within the deadline plus a grace period, it is
killed with its process group, replaced, and the program in flight gets WORKER_DIED; the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .framing import frame, read_message, write_all
from .reasons import Reason

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# What programs may import (and nothing else): program-of-thought arithmetic needs no more.
DEFAULT_ALLOWED_MODULES = ("math", "cmath", "decimal", "fractions", "statistics", "datetime", "itertools",
                           "functools", "operator", "collections", "re", "string")
STARTUP_TIMEOUT_S = 30.0
WORKER_GRACE_S = 2.0  # past the program's deadline, a worker that has not answered is declared hung
PIPELINE_DEPTH = 2  # programs in flight per worker: the running one and the next
PIPELINED_BYTES = 16_384  # larger requests wait until their worker is idle


class SandboxError(RuntimeError):
    """The sandbox itself cannot work (a worker does not start); never raised for a program's failure."""


@dataclass(frozen=True)
class SandboxResult:
    """One program's outcome: ``value`` (float for numbers, "yes"/"no" for bools, stripped text for strings)
    when ``reason`` is None; otherwise ``value`` is None and ``reason`` says why, ``detail`` names the exception
    type, refused operation, signal, exit code or ``ans`` type, and ``message`` holds the exception's text."""

    value: float | str | None
    reason: Reason | None
    detail: str = ""
    message: str = ""
    stdout: str = ""  # what the program printed (stdout and stderr), at most max_output_chars
    seconds: float = 0.0  # wall time in the worker, fork to result

    @property
    def ok(self) -> bool:
        return self.reason is None


def result_from_message(message: dict) -> SandboxResult:
    """A worker's JSON answer as a SandboxResult, checked field by field (a program can forge its own answer,
    never anything outside its own result); anything malformed is CRASHED."""
    try:
        reason = None if message.get("reason") is None else Reason(message["reason"])
    except ValueError:
        reason = Reason.CRASHED
    value = message.get("value")
    if reason is None and type(value) not in (float, str):
        reason = Reason.CRASHED
    texts = {key: text if isinstance(text := message.get(key), str) else "" for key in ("detail", "message", "stdout")}
    seconds = message.get("seconds")
    return SandboxResult(value=None if reason else value, reason=reason,
                         seconds=seconds if type(seconds) is float else 0.0, **texts)


def _readable(fds: list[int], timeout_s: float) -> set[int]:
    """Which of ``fds`` have data or hit EOF within ``timeout_s`` (poll: no FD_SETSIZE limit)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(math.ceil(timeout_s * 1000))}


class _Worker:
    """One worker process, the programs sent to it (indices into the batch) and its deadline."""

    def __init__(self, config: str, workdir: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-I", "-S", str(WORKER_SCRIPT), config],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        cwd=workdir, env={}, start_new_session=True)
        self.to_worker = self.process.stdin.fileno()
        self.from_worker = self.process.stdout.fileno()
        self.jobs: deque[int] = deque()  # programs sent, oldest (the one running) first
        self.deadline = math.inf  # when the oldest must have been answered

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not _readable([self.from_worker], left) or self.receive() is None:
            code = self.process.poll()
            self.kill()
            raise SandboxError(f"sandbox worker {WORKER_SCRIPT} did not start with {sys.executable} -I -S "
                               f"(exit status {code}); run it by hand to see why")

    def send(self, message: bytes) -> None:
        write_all(self.to_worker, message)

    def receive(self) -> dict | None:
        """The next message, or None if the worker died (EOF) or sent something unreadable."""
        return read_message(self.from_worker)

    def kill(self) -> None:
        """Kill the worker and everything in its session (a program's child included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def _kill_all(workers: list[_Worker], workdir: str) -> None:
    for worker in workers:
        worker.kill()
    workers.clear()
    shutil.rmtree(workdir, ignore_errors=True)


class Sandbox:
    """A pool of sandbox workers; use as a context manager (or call ``close()``). Not thread-safe.

    Limits per program: ``timeout_s`` wall clock (CPU time is capped at that, rounded up, plus 1 s),
    ``memory_mb`` of address space, ``max_output_chars`` printed, ``max_answer_chars`` for a string ``ans``; no
    file writes (file-size limit 0), no new processes or file descriptors, imports only from ``allowed_modules``.
    """

    def __init__(self, workers: int = 2, timeout_s: float = 2.0, memory_mb: int = 512,
                 max_output_chars: int = 10_000, max_answer_chars: int = 1_000,
                 allowed_modules: Iterable[str] = DEFAULT_ALLOWED_MODULES) -> None:
        if workers < 1 or timeout_s <= 0 or memory_mb < 64 or max_output_chars < 0 or max_answer_chars < 0:
            raise ValueError("Sandbox needs workers >= 1, timeout_s > 0, memory_mb >= 64 (the interpreter's own "
                             "address space) and non-negative output/answer caps")
        self.workers = workers
        self.timeout_s = timeout_s
        self._budget = timeout_s + WORKER_GRACE_S
        self.workers_replaced = 0
        self._config = json.dumps({"timeout_s": timeout_s, "memory_mb": memory_mb,
                                   "max_output_chars": max_output_chars, "max_answer_chars": max_answer_chars,
                                   "allowed_modules": list(allowed_modules)})
        self._pool: list[_Worker] = []
        self._workdir: str | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def workdir(self) -> str | None:
        """The throwaway directory the workers run in (None until started)."""
        return self._workdir

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self._pool]

    def start(self) -> Sandbox:
        if not self._pool:
            self._workdir = tempfile.mkdtemp(prefix="finqa-sandbox-")
            self._finalizer = weakref.finalize(self, _kill_all, self._pool, self._workdir)
            self._pool.extend(_Worker(self._config, self._workdir) for _ in range(self.workers))
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            try:
                for worker in self._pool:
                    worker.wait_ready(deadline)
            except SandboxError:
                self.close()
                raise
        return self

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, code: str) -> SandboxResult:
        return self.run_many([code])[0]

    def run_many(self, codes: Iterable[str]) -> list[SandboxResult]:
        """Run every program (in parallel over the workers); results in the order of ``codes``."""
        codes = list(codes)
        if not all(isinstance(code, str) for code in codes):
            raise TypeError("Sandbox.run_many takes programs as str")
        self.start()
        for worker in list(self._pool):
            if worker.jobs:  # left busy by an interrupted run_many: its answers belong to no one
                self._replace(worker)
        results: list[SandboxResult | None] = [None] * len(codes)
        queue = deque(range(len(codes)))
        while queue or any(worker.jobs for worker in self._pool):
            for worker in list(self._pool):
                self._fill(worker, queue, codes)
            busy = [worker for worker in self._pool if worker.jobs]
            wait = max(0.0, min(worker.deadline for worker in busy) - time.monotonic())
            readable = _readable([worker.from_worker for worker in busy], wait)
            for worker in busy:
                if worker.from_worker in readable:
                    message = worker.receive()
                    if message is not None and message.get("id") == worker.jobs[0]:
                        results[worker.jobs.popleft()] = result_from_message(message)
                        worker.deadline = time.monotonic() + self._budget if worker.jobs else math.inf
                        continue
                    failure = "worker exited"
                elif time.monotonic() >= worker.deadline:
                    failure = "worker hung"
                else:
                    continue
                results[worker.jobs.popleft()] = SandboxResult(None, Reason.WORKER_DIED, failure)
                queue.extendleft(reversed(worker.jobs))  # sent but never started: run them elsewhere
                self._replace(worker)
        return results

    def _fill(self, worker: _Worker, queue: deque[int], codes: list[str]) -> None:
        """Keep up to PIPELINE_DEPTH programs in the worker's pipe, so that it never waits on the parent;
        only small ones go behind another (a full pipe each way would deadlock)."""
        while queue and len(worker.jobs) < PIPELINE_DEPTH:
            data = frame({"id": queue[0], "code": codes[queue[0]]})
            if worker.jobs and len(data) > PIPELINED_BYTES:
                return
            try:
                worker.send(data)
            except OSError:  # it died: while idle, replace it now; else the dead pipe tells run_many
                if worker.jobs:
                    return
                worker = self._replace(worker)
                worker.send(data)
            if not worker.jobs:
                worker.deadline = time.monotonic() + self._budget
            worker.jobs.append(queue.popleft())

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self._config, self._workdir)
        fresh.wait_ready(time.monotonic() + STARTUP_TIMEOUT_S)
        self._pool[self._pool.index(worker)] = fresh
        self.workers_replaced += 1
        return fresh
