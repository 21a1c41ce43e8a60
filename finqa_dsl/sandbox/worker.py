"""The sandbox worker: a long-lived ``python -I -S`` process that runs each program in a forked child.

Started by ``finqa_dsl.sandbox.pool`` as a script (the parent never imports it); stdlib only, and it loads only
the modules programs may import plus what it needs itself, since a program can reach any loaded module.
Protocol on fd 0 (requests) and fd 1 (responses): framing.py's messages (4-byte big-endian length, then JSON).

Per program the worker forks; the child closes every inherited file descriptor, points 0/1/2 at /dev/null,
chroots into the throwaway directory where it may, lowers its resource limits (address space, CPU time, file
size 0, no new processes, threads or file descriptors, no core dumps), drops the few os functions that act
without an audit event, compiles the code, installs an audit hook that ends the program at the first event not
on a short allowlist (open, import, socket, subprocess, os.system, os.fork, os.kill, ctypes, frame
introspection, ...), runs it with restricted builtins and writes one JSON result to a pipe. The worker kills the
child at the deadline, so a timeout, crash or exit costs a fork (about a millisecond), not a new interpreter,
and no state outlives a program.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import resource
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Run as a script: the package is not importable under -I -S, its sibling modules are.
from framing import frame, read_message, write_all  # noqa: E402
from reasons import Reason  # noqa: E402

RESULT_FD = 3
MAX_MESSAGE_CHARS = 300
# Audit events a program may raise; any other ends it with FORBIDDEN. ``object.__getattr__`` (frames, code
# objects), ``sys._getframe``, ``import`` (of anything not preloaded), ``open`` and every os/socket/ctypes/
# subprocess event are therefore refused.
ALLOWED_EVENTS = frozenset({"exec", "compile", "builtins.id", "object.__setattr__", "object.__delattr__"})
# Functions that act outside the child without raising an audit event: removed from the child's copies of these
# modules (``_imp`` ones would build a fresh ``posix`` module with them back).
_OS_UNAUDITED = ("mkfifo", "mknod", "chroot", "setpriority", "sched_setaffinity", "sched_setscheduler",
                 "sched_setparam")
UNAUDITED = {"posix": _OS_UNAUDITED, "os": _OS_UNAUDITED,
             "_imp": ("create_builtin", "create_dynamic", "exec_builtin", "exec_dynamic")}
REMOVED_BUILTINS = ("open", "eval", "exec", "compile", "input", "breakpoint", "help", "exit", "quit",
                    "globals", "locals", "vars", "memoryview")
WARM_UP = "import math\nrevenue = 5829.0\nprior = 5735.0\nans = round((revenue - prior) / prior * 100, 2) > 1"
# Imported lazily (through the program's __import__) by modules programs may use (datetime.strptime): preloaded
# and allowed, so that no real import happens in a child.
HELPER_MODULES = ("_strptime",)
_TYPE_NAME = type.__dict__["__name__"]
FUNCTION = type(lambda: None)


def type_name(value: object) -> str:
    """The type's own name, whatever the object or its metaclass claim."""
    return _TYPE_NAME.__get__(type(value), type)


def forbidding_hook(allowed: frozenset[str] = ALLOWED_EVENTS, write=os.write, end=os._exit):
    """An audit hook that ends the process at the first event not in ``allowed``, reporting FORBIDDEN.

    Everything it uses is bound here, so a program that rebinds module attributes (``os._exit``, this module's
    globals, ``json``) cannot disarm it; nothing keeps a reference to it that a program could reach.
    """
    head = b'{"reason": "' + Reason.FORBIDDEN.encode() + b'", "detail": "'
    unsafe = bytes(range(32)) + b'"\\'

    def hook(event: str, args: tuple) -> None:
        if event not in allowed:
            try:
                write(RESULT_FD, head + event.encode("ascii", "replace").translate(None, unsafe) + b'"}')
            finally:
                end(0)
    return hook


class _Child:
    """What a program's process does: isolate, limit, run, report once, ``os._exit``. Built once in the worker
    (with the program's builtins) before any fork, so that a child copies as few pages as it can."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.table = self.builtins()
        self.output: list[str] = []
        self.output_chars = 0
        self.finished = False

    def finish(self, reason: Reason | None, detail: str = "", message: str = "", value: object = None) -> None:
        """Write the result and end the process (also from inside the audit hook: nothing here is audited)."""
        if not self.finished:
            self.finished = True
            payload = {"value": value, "reason": reason and str(reason), "detail": detail[:MAX_MESSAGE_CHARS],
                       "message": message[:MAX_MESSAGE_CHARS], "stdout": "".join(self.output)}
            try:
                os.write(RESULT_FD, json.dumps(payload).encode())
            except BaseException:  # noqa: B036  (e.g. MemoryError: the worker reports the bare exit)
                os._exit(3)
        os._exit(0)

    def write(self, text: str) -> int:
        """``sys.stdout``/``sys.stderr``: keep up to the cap, then stop the program with OUTPUT_LIMIT."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type_name(text)}")
        room = self.config["max_output_chars"] - self.output_chars
        self.output.append(text[:room])
        self.output_chars += min(len(text), room)
        if len(text) > room:
            self.finish(Reason.OUTPUT_LIMIT, f"more than {self.config['max_output_chars']} characters")
        return len(text)

    def flush(self) -> None:
        pass

    def isolate(self, result_fd: int) -> None:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        if result_fd != RESULT_FD:
            os.dup2(result_fd, RESULT_FD)
        os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        with contextlib.suppress(OSError):  # needs CAP_SYS_CHROOT (root, most containers); else paths stay real
            os.chroot(".")  # the throwaway directory becomes "/"
        del os.chroot, sys.modules["posix"].chroot  # the rest of UNAUDITED went when the worker started
        memory = self.config["memory_mb"] * 1024 * 1024
        cpu = math.ceil(self.config["timeout_s"]) + 1
        for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, 0),
                             (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_NOFILE, RESULT_FD + 1),
                             (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(limit, (value, value))
        sys.stdin = None
        sys.stdout = sys.stderr = self

    def builtins(self) -> dict:
        allowed = frozenset((*self.config["allowed_modules"], *HELPER_MODULES))
        real_import = builtins.__import__

        def restricted_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
            if level or name.partition(".")[0] not in allowed or name not in sys.modules:
                self.finish(Reason.FORBIDDEN, f"import {name}")
            return real_import(name, globals, locals, fromlist, level)

        def refuse(name: str):
            return lambda *args, **kwargs: self.finish(Reason.FORBIDDEN, name)

        table = dict(vars(builtins))
        table.update({name: refuse(name) for name in REMOVED_BUILTINS}, __import__=restricted_import)
        return table

    def run(self, code: str, result_fd: int) -> None:
        self.isolate(result_fd)
        try:
            compiled = compile(code, "<program>", "exec")
        except (SyntaxError, ValueError) as error:
            self.finish(Reason.SYNTAX_ERROR, type_name(error), str(error))
        except MemoryError:
            self.finish(Reason.MEMORY)
        except BaseException as error:  # noqa: B036  (RecursionError on absurd nesting)
            self.finish(Reason.EXCEPTION, type_name(error))
        namespace = {"__builtins__": self.table, "__name__": "__main__"}
        sys.addaudithook(forbidding_hook())
        try:
            exec(compiled, namespace)
        except MemoryError:
            self.finish(Reason.MEMORY)
        except SystemExit as error:
            code = error.code
            self.finish(Reason.EXITED, str(code) if type(code) in (int, type(None)) else type_name(code))
        except BaseException as error:  # noqa: B036  (the program's failure is data: report it)
            self.finish(Reason.EXCEPTION, type_name(error), self.describe(error))
        self.report(namespace)

    @staticmethod
    def describe(error: BaseException) -> str:
        """The exception's message; a ``__str__`` written in Python is bypassed (it may loop or raise)."""
        own_str = type(error).__str__
        try:
            return BaseException.__str__(error) if type(own_str) is FUNCTION else str(error)
        except BaseException:  # noqa: B036
            return "<unprintable>"

    def report(self, namespace: dict) -> None:
        """``ans`` as plain data: bool -> "yes"/"no", number -> float, str -> stripped text; else NON_NUMERIC_ANS."""
        try:
            found = "ans" in namespace
            ans = namespace.get("ans")
        except MemoryError:
            self.finish(Reason.MEMORY)
        except BaseException as error:  # noqa: B036  (a key with a hostile __eq__ or __hash__)
            self.finish(Reason.EXCEPTION, type_name(error), self.describe(error))
        if not found:
            self.finish(Reason.NO_ANS)
        kind = type_name(ans)
        if type(ans) is bool:
            self.finish(None, value="yes" if ans else "no")
        if issubclass(type(ans), str):
            text = str.__str__(ans).strip()
            if len(text) > self.config["max_answer_chars"]:
                self.finish(Reason.NON_NUMERIC_ANS, kind, f"a string of {len(text)} characters")
            self.finish(None, value=text)
        try:
            number = float(ans)
        except MemoryError:
            self.finish(Reason.MEMORY)
        except BaseException as error:  # noqa: B036  (no __float__, or one that raises or returns junk)
            self.finish(Reason.NON_NUMERIC_ANS, kind, f"{type_name(error)}: {self.describe(error)}")
        self.finish(None, value=number)


def run_one(code: str, child: _Child) -> dict:
    """Run one program in a forked child; the child's result, or the reason it gave none."""
    config = child.config
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            child.run(code, write_end)
        finally:
            os._exit(4)  # never return into the worker's loop
    os.close(write_end)
    deadline = started + config["timeout_s"]
    # JSON escapes a character into at most 12 bytes (a surrogate pair); the rest of a result is small.
    cap = 12 * (config["max_output_chars"] + config["max_answer_chars"] + 2 * MAX_MESSAGE_CHARS) + 4096
    data, timed_out = bytearray(), False
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read_end], [], [], left)[0]:
            timed_out = True
            break
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
        if len(data) > cap:
            break
    if timed_out or len(data) > cap:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    else:  # the pipe closed: the child is exiting, or closed it itself and lingers
        status, timed_out = reap(pid, deadline)
    os.close(read_end)
    result = {"seconds": time.monotonic() - started}
    if timed_out:
        return result | {"reason": Reason.TIMEOUT, "detail": f"wall clock over {config['timeout_s']} s"}
    if len(data) > cap:
        return result | {"reason": Reason.CRASHED, "detail": "oversized result"}
    if not data:
        return result | unreported(status)
    try:
        reported = json.loads(data)
    except ValueError:
        reported = None
    if not isinstance(reported, dict):
        return result | {"reason": Reason.CRASHED, "detail": "malformed result"}
    return reported | result


def reap(pid: int, deadline: float) -> tuple[int, bool]:
    """Wait for the child to exit, killing it at the deadline: (its wait status, whether it was killed)."""
    pause = 0.00005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], True
        time.sleep(pause)
        pause = min(2 * pause, 0.01)


def unreported(status: int) -> dict:
    """Why a child that wrote no result ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU:
            return {"reason": Reason.TIMEOUT, "detail": "CPU-time limit"}
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return {"reason": Reason.CRASHED, "detail": name}
    return {"reason": Reason.EXITED, "detail": str(os.waitstatus_to_exitcode(status))}


def prepare(config: dict) -> _Child:
    """Load what programs may use, drop what they must not reach, and warm the compiler (a child's first compile
    otherwise costs milliseconds of first-time setup, paid again by every fork)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name in (*config["allowed_modules"], *HELPER_MODULES):
        with contextlib.suppress(ImportError):  # not in this Python: programs importing it get FORBIDDEN
            __import__(name)
    for module, names in UNAUDITED.items():
        for name in names:
            if name != "chroot":  # each child still needs it once
                vars(sys.modules[module]).pop(name, None)
    exec(compile(WARM_UP, "<warm-up>", "exec"), {})
    return _Child(config)


def main() -> None:
    child = prepare(json.loads(sys.argv[1]))
    write_all(1, frame({"ready": os.getpid()}))
    while (request := read_message(0)) is not None:
        write_all(1, frame(run_one(request["code"], child) | {"id": request["id"]}))


if __name__ == "__main__":
    main()
