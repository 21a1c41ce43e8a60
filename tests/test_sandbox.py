"""The sandbox runs generated Python as hostile input: every program gets a value or a reason, nothing leaks.

The hostile programs run as one batch in real worker processes (module fixture); each case then checks its own
result, and separate tests check that the parent process, its files and the workers survived the batch.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from finqa_dsl.sandbox import Reason, Sandbox, SandboxError, SandboxResult, framing
from finqa_dsl.sandbox import pool as sandbox_pool
from scripts import benchmark_sandbox

SECRET = "FINQA_SANDBOX_TEST_SECRET"
TIMEOUT_S = 1.0
# A program's way to the real os module without importing it: a class that os defines, found by __subclasses__.
ESCAPE = ("os_ = next(c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close')"
          ".__init__.__globals__\nsys_ = os_['sys']\nbuiltins_ = sys_.modules['builtins']\n")
OK = None  # the program finished with a value

# (id, code, accepted reasons, expected detail or value); SENTINEL is replaced by a directory the test watches.
HOSTILE = [
    ("infinite_loop", "while True:\n    pass", {Reason.TIMEOUT}, None),
    ("busy_comprehensions", "while True:\n    x = [i * i for i in range(10000)]", {Reason.TIMEOUT}, None),
    ("sleep_via_time", "import time\ntime.sleep(100)", {Reason.FORBIDDEN}, "import time"),
    ("fork_bomb_import", "import os\nwhile True:\n    os.fork()", {Reason.FORBIDDEN}, "import os"),
    ("fork_bomb_escape", ESCAPE + "while True:\n    os_['fork']()", {Reason.FORBIDDEN}, "os.fork"),
    ("memory_bomb_string", "x = 'a' * 10**10\nans = 1", {Reason.MEMORY}, None),
    ("memory_bomb_list", "x = [0] * 10**9\nans = 1", {Reason.MEMORY}, None),
    ("memory_bomb_growing", "x = []\nwhile True:\n    x.append(' ' * 10**6)", {Reason.MEMORY, Reason.TIMEOUT}, None),
    ("power_tower", "ans = 10**10**10", {Reason.TIMEOUT, Reason.MEMORY}, None),
    ("huge_int_to_str", "ans = str(10**100000)", {Reason.EXCEPTION}, "ValueError"),
    ("deep_recursion", "def f(n):\n    return f(n + 1)\nans = f(0)", {Reason.EXCEPTION}, "RecursionError"),
    ("deep_recursion_raised_limit", ESCAPE + "sys_.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\n"
     "ans = f(0)", {Reason.CRASHED, Reason.EXCEPTION, Reason.MEMORY, Reason.TIMEOUT}, None),
    ("os_system", "import os\nos.system('touch SENTINEL/pwned')", {Reason.FORBIDDEN}, "import os"),
    ("os_system_escape", ESCAPE + "os_['system']('touch SENTINEL/pwned')", {Reason.FORBIDDEN}, "os.system"),
    ("posix_system_escape", ESCAPE + "sys_.modules['posix'].system('touch SENTINEL/pwned')",
     {Reason.FORBIDDEN}, "os.system"),
    ("subprocess_import", "import subprocess\nsubprocess.run(['touch', 'SENTINEL/pwned'])",
     {Reason.FORBIDDEN}, "import subprocess"),
    ("popen_escape", ESCAPE + "os_['popen']('touch SENTINEL/pwned')", {Reason.FORBIDDEN}, "import"),
    ("exec_escape", ESCAPE + "os_['execv']('/bin/sh', ['sh', '-c', 'touch SENTINEL/pwned'])",
     {Reason.FORBIDDEN}, "os.exec"),
    ("posix_spawn_escape", ESCAPE + "os_['posix_spawn']('/bin/touch', ['touch', 'SENTINEL/pwned'], {})",
     {Reason.FORBIDDEN}, "os.posix_spawn"),
    ("write_file", "open('SENTINEL/new.txt', 'w').write('x')", {Reason.FORBIDDEN}, "open"),
    ("write_file_real_open", ESCAPE + "builtins_.open('SENTINEL/new.txt', 'w').write('x')", {Reason.FORBIDDEN},
     "open"),
    ("write_file_os_open", ESCAPE + "os_['open']('SENTINEL/new.txt', os_['O_CREAT'] | os_['O_WRONLY'])",
     {Reason.FORBIDDEN}, "open"),
    ("write_file_fileio", ESCAPE + "sys_.modules['io'].FileIO('SENTINEL/keep.txt', 'w')", {Reason.FORBIDDEN},
     "open"),
    ("delete_file", ESCAPE + "os_['remove']('SENTINEL/keep.txt')", {Reason.FORBIDDEN}, "os.remove"),
    ("rename_file", ESCAPE + "os_['rename']('SENTINEL/keep.txt', 'SENTINEL/moved.txt')", {Reason.FORBIDDEN},
     "os.rename"),
    ("mkfifo_escape", ESCAPE + "os_['mkfifo']('SENTINEL/fifo')", {Reason.EXCEPTION}, "KeyError"),
    ("mknod_escape", ESCAPE + "sys_.modules['posix'].mknod('SENTINEL/node')", {Reason.EXCEPTION}, "AttributeError"),
    ("fresh_posix_module", ESCAPE + "spec = sys_.modules['_frozen_importlib'].ModuleSpec('posix', None)\n"
     "sys_.modules['_imp'].create_builtin(spec).mkfifo('SENTINEL/fifo')", {Reason.EXCEPTION}, "AttributeError"),
    ("chroot_escape", ESCAPE + "os_['chroot']('/')", {Reason.EXCEPTION}, "KeyError"),
    ("renice_worker", ESCAPE + "os_['setpriority'](0, os_['getppid'](), 19)", {Reason.EXCEPTION}, "KeyError"),
    ("disarm_hook_globals", ESCAPE + "class Everything:\n    def __contains__(self, item):\n        return True\n"
     "sys_.modules['__main__'].ALLOWED_EVENTS = Everything()\nos_['_exit'] = lambda code: None\n"
     "sys_.stdout.finish = lambda *args, **kwargs: None\nos_['remove']('SENTINEL/keep.txt')",
     {Reason.FORBIDDEN}, "os.remove"),
    ("chmod_file", ESCAPE + "os_['chmod']('SENTINEL/keep.txt', 0)", {Reason.FORBIDDEN}, "os.chmod"),
    ("truncate_file", ESCAPE + "os_['truncate']('SENTINEL/keep.txt', 0)", {Reason.FORBIDDEN}, "os.truncate"),
    ("read_file", "ans = open('/etc/passwd').read()", {Reason.FORBIDDEN}, "open"),
    ("list_directory", ESCAPE + "ans = str(os_['listdir']('/'))", {Reason.FORBIDDEN}, "os.listdir"),
    ("change_directory", ESCAPE + "os_['chdir']('/')", {Reason.FORBIDDEN}, "os.chdir"),
    ("read_env_var", ESCAPE + f"ans = os_['environ'].get('{SECRET}', 'absent')", {OK}, "absent"),
    ("read_env_getenv", ESCAPE + f"ans = os_['getenv']('{SECRET}') or 'absent'", {OK}, "absent"),
    ("set_env_var", ESCAPE + "os_['putenv']('PATH', '/nowhere')", {Reason.FORBIDDEN}, "os.putenv"),
    ("socket_import", "import socket\nsocket.create_connection(('127.0.0.1', 80))", {Reason.FORBIDDEN},
     "import socket"),
    ("socket_escape", ESCAPE + "s = builtins_.__import__('socket')", {Reason.FORBIDDEN}, "import"),
    ("subclasses_listing", "ans = len(().__class__.__base__.__subclasses__())", {OK}, None),
    ("dunder_import", "__import__('os').system('touch SENTINEL/pwned')", {Reason.FORBIDDEN}, "import os"),
    ("dunder_import_relative", "from . import anything", {Reason.FORBIDDEN}, "import "),
    ("eval_builtin", "ans = eval('1 + 1')", {Reason.FORBIDDEN}, "eval"),
    ("exec_builtin", "exec('ans = 1')", {Reason.FORBIDDEN}, "exec"),
    ("compile_builtin", "c = compile('1', 'x', 'eval')", {Reason.FORBIDDEN}, "compile"),
    ("real_eval_stays_hooked", ESCAPE + "builtins_.eval(\"__import__('os').system('touch SENTINEL/pwned')\", "
     "{'__builtins__': builtins_})",
     {Reason.FORBIDDEN}, "os.system"),
    ("ctypes_import", "import ctypes\nctypes.CDLL(None).system(b'touch SENTINEL/pwned')", {Reason.FORBIDDEN},
     "import ctypes"),
    ("ctypes_escape", ESCAPE + "builtins_.__import__('ctypes')", {Reason.FORBIDDEN}, "import"),
    ("signal_import", "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)", {Reason.FORBIDDEN},
     "import signal"),
    ("signal_alarm_escape", ESCAPE + "s = sys_.modules['_signal']\ns.setitimer(s.ITIMER_REAL, 0.01)\n"
     "while True:\n    pass", {Reason.CRASHED, Reason.FORBIDDEN}, None),
    ("kill_worker", ESCAPE + "os_['kill'](os_['getppid'](), 9)", {Reason.FORBIDDEN}, "os.kill"),
    ("kill_process_group", ESCAPE + "os_['killpg'](0, 9)", {Reason.FORBIDDEN}, "os.killpg"),
    ("kill_self", ESCAPE + "os_['kill'](os_['getpid'](), 9)", {Reason.FORBIDDEN}, "os.kill"),
    ("sys_exit", ESCAPE + "sys_.exit(5)", {Reason.EXITED}, "5"),
    ("raise_system_exit", "raise SystemExit(0)", {Reason.EXITED}, "0"),
    ("builtin_exit", "exit(3)", {Reason.FORBIDDEN}, "exit"),
    ("os_exit", ESCAPE + "os_['_exit'](7)", {Reason.EXITED}, "7"),
    ("abort", ESCAPE + "os_['abort']()", {Reason.CRASHED, Reason.FORBIDDEN}, None),
    ("huge_print", "print('y' * 10**7)\nans = 1", {Reason.OUTPUT_LIMIT}, None),
    ("print_forever", "while True:\n    print('x' * 100)", {Reason.OUTPUT_LIMIT}, None),
    ("write_to_fd_1", ESCAPE + "os_['write'](1, b'x' * 10**6)\nans = 1", {OK}, 1.0),
    ("read_stdin", ESCAPE + "ans = len(os_['read'](0, 100))", {OK}, 0.0),
    ("corrupt_result_pipe", ESCAPE + "os_['write'](3, b'garbage')\nans = 1", {Reason.CRASHED}, "malformed result"),
    ("close_result_pipe_and_spin", ESCAPE + "os_['close'](3)\nwhile True:\n    pass", {Reason.TIMEOUT}, None),
    ("forge_result_and_spin", ESCAPE + "os_['write'](3, b'{\"value\": 42.0}')\nos_['close'](3)\n"
     "while True:\n    pass", {Reason.TIMEOUT}, None),
    ("prlimit_worker", ESCAPE + "r = sys_.modules['resource']\nr.prlimit(os_['getppid'](), r.RLIMIT_NOFILE, (0, 0))",
     {Reason.FORBIDDEN}, "resource.prlimit"),
    ("raise_own_limits", ESCAPE + "r = sys_.modules['resource']\nr.setrlimit(r.RLIMIT_AS, (-1, -1))",
     {Reason.FORBIDDEN}, "resource.setrlimit"),
    ("sleep_escape", ESCAPE + "sys_.modules['time'].sleep(100)", {Reason.FORBIDDEN, Reason.TIMEOUT}, None),
    ("stat_outside", ESCAPE + "ans = os_['stat']('/etc/passwd').st_size", {Reason.EXCEPTION, OK}, None),
    ("threading_import", "import threading", {Reason.FORBIDDEN}, "import threading"),
    ("threads_escape", ESCAPE + "t = sys_.modules['_thread']\ndef spin():\n    while True:\n        pass\n"
     "for _ in range(20):\n    t.start_new_thread(spin, ())\nans = 1", {OK, Reason.EXCEPTION, Reason.FORBIDDEN},
     None),
    ("traceback_frame", "try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__.tb_frame.f_back",
     {Reason.FORBIDDEN}, "object.__getattr__"),
    ("generator_frame", "def g():\n    yield 1\nans = g().gi_frame", {Reason.FORBIDDEN}, "object.__getattr__"),
    ("code_object", "c = (lambda: 0).__code__", {Reason.FORBIDDEN}, "object.__getattr__"),
    ("getframe", ESCAPE + "f = sys_._getframe(0)", {Reason.FORBIDDEN}, "sys._getframe"),
    ("settrace", ESCAPE + "sys_.settrace(lambda *a: None)", {Reason.FORBIDDEN}, "sys.settrace"),
    ("add_audit_hook", ESCAPE + "sys_.addaudithook(lambda *a: None)", {Reason.FORBIDDEN}, "sys.addaudithook"),
    ("gc_objects", "import gc\nans = len(gc.get_objects())", {Reason.FORBIDDEN}, "import gc"),
    ("input_builtin", "ans = input()", {Reason.FORBIDDEN}, "input"),
    ("breakpoint_builtin", "breakpoint()", {Reason.FORBIDDEN}, "breakpoint"),
    ("float_raises", "class A:\n    def __float__(self):\n        raise ValueError('no')\nans = A()",
     {Reason.NON_NUMERIC_ANS}, "A"),
    ("float_loops", "class A:\n    def __float__(self):\n        while True:\n            pass\nans = A()",
     {Reason.TIMEOUT}, None),
    ("float_returns_str", "class A:\n    def __float__(self):\n        return 'one'\nans = A()",
     {Reason.NON_NUMERIC_ANS}, "A"),
    ("int_subclass_bad_float", "class I(int):\n    def __float__(self):\n        raise ValueError\nans = I(3)",
     {Reason.NON_NUMERIC_ANS}, "I"),
    ("str_subclass_hostile", "class S(str):\n    def __str__(self):\n        while True:\n            pass\n"
     "    def __eq__(self, other):\n        raise RuntimeError\n    __hash__ = str.__hash__\n"
     "    def strip(self):\n        raise RuntimeError\nans = S(' yes ')", {OK}, "yes"),
    ("repr_loops", "class R:\n    def __repr__(self):\n        while True:\n            pass\nans = R()",
     {Reason.NON_NUMERIC_ANS}, "R"),
    ("class_spoofed", "class F:\n    @property\n    def __class__(self):\n        return float\nans = F()",
     {Reason.NON_NUMERIC_ANS}, "F"),
    ("metaclass_name_spoofed", "class M(type):\n    @property\n    def __name__(cls):\n        while True:\n"
     "            pass\nclass X(metaclass=M):\n    pass\nans = X()", {Reason.NON_NUMERIC_ANS}, "X"),
    ("exception_str_loops", "class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
     "raise E()", {Reason.EXCEPTION}, "E"),
    ("del_prints_forever", "class D:\n    def __del__(self):\n        while True:\n            print('x')\n"
     "ans = 2\nd = D()", {OK}, 2.0),
    ("nested_parentheses", "ans = " + "(" * 500 + "1" + ")" * 500, {Reason.SYNTAX_ERROR}, None),
    ("deep_unary_chain", "ans = " + "-" * 200000 + "1", {Reason.SYNTAX_ERROR, Reason.EXCEPTION, Reason.MEMORY},
     None),
    ("null_byte", "ans = 1\x00", {Reason.SYNTAX_ERROR}, None),
]


def sentinel_code(code: str, sentinel: Path) -> str:
    return code.replace("SENTINEL", str(sentinel))


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """Every file under root (but the skipped folder names): size and sha256."""
    state = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in skip]
        for name in files:
            path = Path(folder, name)
            if path.is_file():
                state[str(path)] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def parent_state() -> dict:
    return {"pid": os.getpid(), "cwd": os.getcwd(), "env": dict(os.environ),
            "signals": {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM,
                                                                        signal.SIGCHLD, signal.SIGPIPE)}}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Run every hostile program in one batch; record what the parent looked like before and after."""
    sentinel = tmp_path_factory.mktemp("sentinel")
    (sentinel / "keep.txt").write_text("keep me")
    os.environ[SECRET] = "s3cret"
    watched = {"sentinel": lambda: snapshot(sentinel),
               "repo": lambda: snapshot(REPO_ROOT, skip=(".git", "__pycache__", ".pytest_cache", ".ruff_cache",
                                                         "__output__"))}
    before = {name: take() for name, take in watched.items()}
    parent = parent_state()
    with Sandbox(workers=2, timeout_s=TIMEOUT_S, memory_mb=256) as sandbox:
        pids = sandbox.worker_pids()
        results = sandbox.run_many(sentinel_code(code, sentinel) for _, code, _, _ in HOSTILE)
        after_batch = sandbox.run("a = 6\nb = 4\nans = a / b")
        state = {"pids": pids, "pids_after": sandbox.worker_pids(), "replaced": sandbox.workers_replaced,
                 "workdir": sandbox.workdir}
    yield {"results": dict(zip([case[0] for case in HOSTILE], results, strict=True)),
           "before": before, "after": {name: take() for name, take in watched.items()}, "parent": parent,
           "parent_after": parent_state(),
           "after_batch": after_batch, "sentinel": sentinel, **state}
    del os.environ[SECRET]


def test_the_hostile_suite_is_large():
    assert len(HOSTILE) >= 40
    assert len({case[0] for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(("code", "reasons", "expected"), [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])
def test_hostile_program_yields_a_reason(hostile_run, request, code, reasons, expected):
    name = request.node.callspec.id
    result: SandboxResult = hostile_run["results"][name]
    assert result.reason in reasons, result
    if result.reason is None:
        assert expected is None or result.value == expected
    elif expected is not None:
        assert result.detail.startswith(expected), result
        assert result.value is None


def test_hostile_programs_leave_the_parent_and_its_files_unharmed(hostile_run):
    assert hostile_run["parent_after"] == hostile_run["parent"]  # pid, cwd, environment, signal handlers
    assert hostile_run["after"] == hostile_run["before"]  # the sentinel folder and the whole checkout
    assert not (hostile_run["sentinel"] / "pwned").exists()
    assert not Path(hostile_run["workdir"]).exists()  # the throwaway directory went with the sandbox


def test_hostile_programs_never_kill_a_worker_and_scoring_continues(hostile_run):
    assert hostile_run["replaced"] == 0
    assert hostile_run["pids_after"] == hostile_run["pids"]
    assert hostile_run["after_batch"] == SandboxResult(1.5, None, seconds=hostile_run["after_batch"].seconds)
    for pid in hostile_run["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # closed with the sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=TIMEOUT_S, memory_mb=256) as running:
        yield running


@pytest.mark.parametrize(("code", "value"), [
    ("revenue_2019 = 5829\nrevenue_2018 = 5735\nans = (revenue_2019 - revenue_2018) / revenue_2018",
     (5829 - 5735) / 5735),
    ("ans = 94", 94.0),
    ("change = 12.5\nans = change / 100", 0.125),
    ("ans = round(100 * 37 / 250, 2)", 14.8),
    ("ans = 5829 > 5735", "yes"),
    ("ans = 1 > 2", "no"),
    ("ans = ' Yes \\n'", "Yes"),
    ("ans = 'True'", "True"),
    ("import math\nans = math.sqrt(16) + math.log(math.e)", 5.0),
    ("from decimal import Decimal\nans = Decimal('1.10') + Decimal('2.20')", 3.3),
    ("from fractions import Fraction\nans = Fraction(1, 4)", 0.25),
    ("import statistics\nans = statistics.mean([1, 2, 3, 4])", 2.5),
    ("import datetime\nans = datetime.datetime.strptime('2019-03-04', '%Y-%m-%d').day", 4.0),
    ("def growth(a, b):\n    return (a - b) / b\n\nif __name__ == '__main__':\n    ans = growth(110, 100)", 0.1),
    ("class Row:\n    def __init__(self, v):\n        self.v = v\nans = sum(Row(i).v for i in range(5))", 10.0),
    ("ans = True + 2", 3.0),
    ("ans = 10**400 // 10**399", 10.0),
])
def test_normal_programs_get_their_value(sandbox, code, value):
    result = sandbox.run(code)
    assert result.ok, result
    assert result.value == pytest.approx(value) if isinstance(value, float) else result.value == value
    assert type(result.value) is type(value)


@pytest.mark.parametrize(("code", "reason", "detail"), [
    ("ans = 1 / 0", Reason.EXCEPTION, "ZeroDivisionError"),
    ("x = [1, 2]\nans = x[5]", Reason.EXCEPTION, "IndexError"),
    ("ans = undefined_name * 2", Reason.EXCEPTION, "NameError"),
    ("ans = (1 +", Reason.SYNTAX_ERROR, "SyntaxError"),
    ("  ans = 1", Reason.SYNTAX_ERROR, "IndentationError"),
    ("revenue = 100", Reason.NO_ANS, ""),
    ("ans = None", Reason.NON_NUMERIC_ANS, "NoneType"),
    ("ans = [1, 2]", Reason.NON_NUMERIC_ANS, "list"),
    ("ans = 1 + 2j", Reason.NON_NUMERIC_ANS, "complex"),
    ("ans = 10**400", Reason.NON_NUMERIC_ANS, "int"),
    ("ans = 'x' * 5000", Reason.NON_NUMERIC_ANS, "str"),
    ("import numpy", Reason.FORBIDDEN, "import numpy"),
])
def test_failing_programs_get_their_reason(sandbox, code, reason, detail):
    result = sandbox.run(code)
    assert (result.value, result.reason, result.detail) == (None, reason, detail), result


def test_exception_message_and_output_are_kept(sandbox):
    result = sandbox.run("print('step 1', 2 * 3)\nx = {}\nans = x['missing']")
    assert (result.reason, result.detail, result.message, result.stdout) == (
        Reason.EXCEPTION, "KeyError", "'missing'", "step 1 6\n")


def test_output_is_capped_at_the_limit():
    with Sandbox(workers=1, timeout_s=TIMEOUT_S, max_output_chars=10) as small:
        fits, over = small.run_many(["print('123456789')\nans = 1", "print('1234567890')\nans = 1"])
    assert (fits.value, fits.stdout) == (1.0, "123456789\n")
    assert (over.reason, over.stdout) == (Reason.OUTPUT_LIMIT, "1234567890")


def test_nan_and_infinity_come_back_as_floats(sandbox):
    nan, inf = sandbox.run_many(["ans = float('nan')", "ans = -float('inf')"])
    assert math.isnan(nan.value) and inf.value == -math.inf


def test_no_state_leaks_from_one_program_to_the_next():
    with Sandbox(workers=1, timeout_s=TIMEOUT_S) as one_worker:
        first, second, third = one_worker.run_many([
            "import math\nmath.pi = 3\nleaked = 1\nans = math.pi",
            "import math\nans = math.pi",
            "ans = leaked"])
    assert first.value == 3.0
    assert second.value == pytest.approx(math.pi)
    assert (third.reason, third.detail) == (Reason.EXCEPTION, "NameError")


def test_results_keep_the_order_of_the_programs(sandbox):
    results = sandbox.run_many(f"ans = {i} * 2" for i in range(50))
    assert [result.value for result in results] == [2.0 * i for i in range(50)]


def test_a_worker_killed_mid_program_is_replaced_and_the_run_goes_on():
    with Sandbox(workers=1, timeout_s=5.0) as one_worker:
        victim = one_worker.worker_pids()[0]
        threading.Timer(0.5, os.kill, (victim, signal.SIGKILL)).start()
        died, after = one_worker.run_many(["while True:\n    pass", "ans = 41 + 1"])
        assert (died.reason, died.detail) == (Reason.WORKER_DIED, "worker exited")
        assert after.value == 42.0
        assert one_worker.workers_replaced == 1 and one_worker.worker_pids() != [victim]


def test_a_hung_worker_is_replaced_after_the_deadline_and_grace():
    with Sandbox(workers=1, timeout_s=0.2) as one_worker:
        victim = one_worker.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)  # the worker stops answering, as a wedged one would
        began = time.monotonic()
        hung, after = one_worker.run_many(["ans = 1", "ans = 2"])
        waited = time.monotonic() - began
    assert (hung.reason, hung.detail) == (Reason.WORKER_DIED, "worker hung")
    assert after.value == 2.0
    assert waited >= 0.2 + sandbox_pool.WORKER_GRACE_S  # it gave the worker its deadline and grace first
    assert one_worker.workers_replaced == 1


def test_a_worker_that_died_while_idle_is_replaced_before_its_next_program():
    with Sandbox(workers=1, timeout_s=TIMEOUT_S) as one_worker:
        victim = one_worker.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.1)
        assert one_worker.run("ans = 7").value == 7.0


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox_pool, "WORKER_SCRIPT", tmp_path / "missing_worker.py")
    with pytest.raises(SandboxError, match="did not start"), Sandbox(workers=1):
        pass


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="workers >= 1"):
        Sandbox(workers=0)
    with pytest.raises(ValueError, match="memory_mb >= 64"):
        Sandbox(memory_mb=8)
    with pytest.raises(TypeError, match="programs as str"):
        Sandbox().run_many([b"ans = 1"])


def test_large_programs_and_large_outputs_do_not_jam_the_pipes(sandbox):
    padding = "# " + "x" * 40_000 + "\n"  # past the size that is queued behind a running program
    codes = [padding + f"ans = {i}" if i % 3 == 0 else f"print('\\U0001F600' * 9000)\nans = {i}" for i in range(30)]
    results = sandbox.run_many(codes)
    assert [result.value for result in results] == [float(i) for i in range(30)]
    assert all(result.stdout == "\U0001F600" * 9000 + "\n" for i, result in enumerate(results) if i % 3)


def test_benchmark_programs_get_the_same_values_as_one_subprocess_each():
    summary = benchmark_sandbox.main(["--n", "20", "--examples", str(REPO_ROOT / "FinQA" / "sample")])
    assert summary["values_differing"] == 0 and summary["failed"] == 0
    assert summary["match_gold_exe_ans"] == 20  # the translated gold programs compute the gold answers


@pytest.mark.parametrize(("message", "expected"), [
    ({"value": 2.5, "reason": None, "stdout": "hi", "seconds": 0.5},
     SandboxResult(2.5, None, stdout="hi", seconds=0.5)),
    ({"value": "no", "detail": 5, "seconds": "soon"}, SandboxResult("no", None)),
    ({"value": 42}, SandboxResult(None, Reason.CRASHED)),  # ints never come from the child: forged
    ({"value": [1]}, SandboxResult(None, Reason.CRASHED)),
    ({"reason": "bogus", "value": 1.0}, SandboxResult(None, Reason.CRASHED)),
    ({"reason": "timeout", "value": 1.0, "detail": "d"}, SandboxResult(None, Reason.TIMEOUT, "d")),
])
def test_worker_messages_are_checked_field_by_field(message, expected):
    assert sandbox_pool.result_from_message(message) == expected


@pytest.mark.parametrize(("written", "expected"), [
    (framing.frame({"id": 3, "code": "ans = '\u00e9' * 70000"}), {"id": 3, "code": "ans = '\u00e9' * 70000"}),
    (framing.frame({"id": 1})[:-1], None),  # the pipe ends inside a message
    (b"", None),
    (framing.HEADER.pack(4) + b"[1]\n", None),  # JSON, but not an object
    (framing.HEADER.pack(3) + b"{no", None),
])
def test_one_framing_reads_back_what_it_wrote_and_nothing_else(written, expected):
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (framing.write_all(write_end, written), os.close(write_end)))
    writer.start()  # a message larger than the pipe's buffer is written while it is read
    try:
        assert framing.read_message(read_end) == expected
    finally:
        writer.join()
        os.close(read_end)


def test_a_run_interrupted_by_the_caller_leaves_the_sandbox_usable():
    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with Sandbox(workers=1, timeout_s=3.0) as one_worker:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupted):
                one_worker.run_many(["while True:\n    pass", "ans = 1"])
            looping = one_worker.worker_pids()
            assert [result.value for result in one_worker.run_many(["ans = 2", "ans = 3"])] == [2.0, 3.0]
            # the worker left in the abandoned loop was replaced, not waited for until its deadline
            assert one_worker.workers_replaced == 1 and one_worker.worker_pids() != looping
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_sandbox_package_is_torch_free():
    code = "import sys, finqa_dsl.sandbox\nprint(sorted({'torch', 'transformers', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_program_can_reach_no_module_that_opens_processes_sockets_or_libraries(sandbox):
    loaded = sandbox.run(ESCAPE + "ans = ' '.join(sorted(sys_.modules))")
    assert loaded.ok, loaded
    dangerous = {"subprocess", "_posixsubprocess", "socket", "_socket", "ctypes", "_ctypes", "threading", "mmap",
                 "multiprocessing", "gc", "importlib", "pty", "fcntl"}
    assert dangerous.isdisjoint(loaded.value.split())
