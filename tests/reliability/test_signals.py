"""Signals and exits. SIGINT and SIGTERM sent to the launcher reach the program, which then
behaves exactly as if it had been sent to ``python`` itself: the same handler output, the same
KeyboardInterrupt traceback, the same exit status or death by the same signal. Exits through
SystemExit values, atexit and threads end the same way as under ``python``.

tests/e2e/test_transparency.py covers sys.exit(3), SystemExit("message"), an uncaught
exception's traceback, os._exit and a KeyboardInterrupt raised by the program itself; these
are the signal-forwarding cases and the rest of the exit paths.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import _clean_env, flowagent_cmd, run_cli, run_python, strip_summary
from reliability_support import (
    PROGRAMS,
    Running,
    accounting,
    launch,
    program_pid,
    start_plain,
    wait_gone,
)

pytestmark = pytest.mark.e2e

Send = Callable[[Running], None]


def _to_process(sig: int, times: int = 1) -> Send:
    def send(run: Running) -> None:
        for _ in range(times):
            os.kill(run.pid, sig)
            time.sleep(0.2)
    return send


def _to_group(sig: int, times: int) -> Send:
    """As a terminal's ^C, `kill -INT -PGID` or a supervisor stopping a process group.

    The process we started (the launcher, or plain python) is paused meanwhile and resumed
    0.3 s later: so the program surely takes its own copy before a launcher could forward
    one (else, on a loaded machine, both can land while the program waits for a CPU and the
    kernel merges them into one delivery)."""
    def send(run: Running) -> None:
        for _ in range(times):
            os.kill(run.pid, signal.SIGSTOP)
            try:
                os.killpg(run.pid, sig)
                time.sleep(0.3)
            finally:
                os.kill(run.pid, signal.SIGCONT)
            time.sleep(0.3)
    return send


def _both(tmp: Path, mode: str, send: Send, wait_s: float = 20.0
          ) -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes], Path]:
    """(returncode, stdout, stderr) of the program run plainly and under the launcher, each
    sent the same signals once it is ready (plainly: to python; else: to the launcher)."""
    shutil.copy(PROGRAMS / "signals.py", tmp)
    args = ["signals.py", mode, str(wait_s)]
    data = tmp / "data"
    results = []
    for start in (lambda: start_plain(args, tmp),
                  lambda: launch(["run", "--data-dir", str(data), *args], tmp)):
        run = start()
        try:
            run.wait_line(b"ready")
            time.sleep(0.2)  # well inside wait_for_signals()
            send(run)
            rc = run.wait(timeout=60)
        finally:
            run.kill()
        results.append((rc, run.stdout, run.stderr))
    return results[0], results[1], data


def _same(plain: tuple[int, bytes, bytes], fa: tuple[int, bytes, bytes]) -> None:
    assert fa[1] == plain[1]
    assert strip_summary(fa[2]) == plain[2]
    assert fa[0] == plain[0]
    assert b"flowagent: run " in fa[2]


def test_sigterm_reaches_the_programs_handler(tmp_path: Path, figure) -> None:
    plain, fa, _ = _both(tmp_path, "term-handler", _to_process(signal.SIGTERM))
    _same(plain, fa)
    assert plain[:2] == (7, b"ready\ngot SIGTERM\n")
    figure("SIGTERM to the launcher: forwarded; the program's handler prints and exits 7, "
           "same output and status as SIGTERM sent to plain python")


def test_sigterm_kills_the_program_as_it_would(tmp_path: Path, figure) -> None:
    plain, fa, data = _both(tmp_path, "default", _to_process(signal.SIGTERM))
    _same(plain, fa)
    assert plain[0] == -signal.SIGTERM
    acc = accounting(data)
    assert [(s["name"], s["result"]) for s in acc["sessions"]] == [
        ("__main__:wait_for_signals", "incomplete")]
    figure("SIGTERM to the launcher, no handler: the program dies by SIGTERM and so does the "
           "launcher (-15 as plainly); the session it was in is stored as incomplete")


def test_sigint_raises_the_same_keyboard_interrupt(tmp_path: Path, figure) -> None:
    plain, fa, _ = _both(tmp_path, "default", _to_process(signal.SIGINT))
    _same(plain, fa)
    assert plain[0] == -signal.SIGINT and plain[2].endswith(b"KeyboardInterrupt\n")
    assert b"in wait_for_signals" in plain[2]
    figure("SIGINT to the launcher: KeyboardInterrupt in the program, byte-identical "
           "traceback, dies by SIGINT (-2, 130 in a shell) as plainly")


def test_ignored_sigint_is_ignored(tmp_path: Path, figure) -> None:
    plain, fa, _ = _both(tmp_path, "ignore-int", _to_process(signal.SIGINT, times=2), 1.5)
    _same(plain, fa)
    assert plain[:2] == (0, b"ready\nwaited\n")
    figure("SIGINT x2 to the launcher of a program that ignores SIGINT: the program runs on "
           "and exits 0; the launcher neither dies nor changes the status")


def test_repeated_sigint_is_forwarded_each_time(tmp_path: Path) -> None:
    plain, fa, _ = _both(tmp_path, "count", _to_process(signal.SIGINT, times=3), 3)
    _same(plain, fa)
    assert plain[1] == b"ready\nSIGINT deliveries: 3\n"


def test_signal_to_the_process_group_is_delivered_once(tmp_path: Path, figure) -> None:
    # (bug 12: the program got each SIGINT twice, directly and forwarded by the launcher)
    plain, fa, _ = _both(tmp_path, "count", _to_group(signal.SIGINT, times=3), 3)
    assert plain[1] == b"ready\nSIGINT deliveries: 3\n"
    _same(plain, fa)
    figure("SIGINT x3 to the launcher's process group (`kill -INT -PGID`, no terminal): the "
           "program counts 3 deliveries, as plainly (it has its own process group; the "
           "launcher forwards)")


def test_terminal_ctrl_c_is_delivered_once(tmp_path: Path, figure) -> None:
    """^C typed in a terminal: the terminal sends SIGINT to its whole foreground group, the
    launcher and the program (which stays in that group for job control); the launcher must
    not forward a second one."""
    shutil.copy(PROGRAMS / "signals.py", tmp_path)
    args = ["signals.py", "count", "1"]
    plain = _in_a_terminal([sys.executable, *args], tmp_path, keys=b"\x03")
    fa = _in_a_terminal(flowagent_cmd("run", "--data-dir", str(tmp_path / "d"), *args),
                        tmp_path, keys=b"\x03")
    assert b"SIGINT deliveries: 1\r\n" in plain[1], plain
    assert fa[0] == plain[0] == 0
    assert b"SIGINT deliveries: 1\r\n" in fa[1] and b"flowagent: run " in fa[1], fa
    figure("^C in a terminal (a pty; program and launcher in its foreground group): 1 "
           "delivery, as plainly (the terminal's own signals are not forwarded)")


def _in_a_terminal(argv: list[str], cwd: Path, keys: bytes) -> tuple[int, bytes]:
    """(exit status, terminal output) of ``argv`` run on a new pseudo-terminal as the
    foreground job; ``keys`` are typed once it printed "ready"."""
    env = _clean_env(None)
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader, the pty its controlling terminal
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    typed = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every process of the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            if not typed and b"ready" in out:
                time.sleep(0.2)  # well inside wait_for_signals()
                # As in _to_group: the process we started is paused meanwhile, so the program
                # surely takes its own copy before a launcher could forward one.
                os.kill(pid, signal.SIGSTOP)
                try:
                    os.write(master, keys)
                    time.sleep(0.3)
                finally:
                    os.kill(pid, signal.SIGCONT)
                typed = True
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_program_dies_with_its_launcher(tmp_path: Path, figure) -> None:
    """Without a terminal the program has a process group of its own, so SIGKILL sent to the
    launcher's group (a CI runner's or supervisor's last resort) does not reach it; the kernel
    then kills it with its launcher (PR_SET_PDEATHSIG), as the group kill would have."""
    shutil.copy(PROGRAMS / "signals.py", tmp_path)
    run = launch(["run", "--data-dir", str(tmp_path / "d"), "signals.py", "default", "30"],
                 tmp_path)
    try:
        run.wait_line(b"ready")
        program = program_pid(run.pid)
        os.killpg(run.pid, signal.SIGKILL)
        wait_gone(program)
    finally:
        run.kill()
    figure("SIGKILL to the launcher's process group (no terminal): the program, in its own "
           "group, dies with the launcher (nothing left running)")


# -- exit paths --------------------------------------------------------------------------

EXITS = {
    "sys.exit()": "sys.exit()",
    "sys.exit(0)": "sys.exit(0)",
    "sys.exit(255)": "sys.exit(255)",
    "sys.exit(256)": "sys.exit(256)",
    "sys.exit(-1)": "sys.exit(-1)",
    "sys.exit(True)": "sys.exit(True)",
    "SystemExit(object)": "raise SystemExit(Opaque())",
    "SystemExit(None, 2)": "raise SystemExit(None, 2)",
    "exit() builtin": "exit(5)",
    "BaseException subclass": "raise Stop('custom base exception')",
    "exception with a cause and context": (
        "try:\n        {}['k']\n    except KeyError as e:\n"
        "        raise ValueError('wrapped') from e"),
    "exception raised in atexit": "atexit.register(broken_cleanup)",
    "sys.exit in atexit": "atexit.register(sys.exit, 9)",
    "SystemExit in a thread": (
        "t = threading.Thread(target=sys.exit, args=(4,)); t.start(); t.join()"),
    "exception in a thread": (
        "t = threading.Thread(target=broken_cleanup); t.start(); t.join()"),
    "os._exit from a thread": (
        "t = threading.Thread(target=os._exit, args=(6,)); t.start(); t.join(); "
        "time.sleep(5)"),
    "exit while a non-daemon thread runs": (
        "threading.Thread(target=lambda: (time.sleep(0.3), print('late'))).start(); "
        "sys.exit(8)"),
    "os.abort": "sys.stdout.flush(); os.abort()",
    "sys.exit with unflushed output": "print('buffered', end=''); sys.exit(2)",
}
FAST_EXITS = {"sys.exit(256)", "SystemExit(object)", "exception raised in atexit",
              "SystemExit in a thread", "os.abort"}

EXIT_PROGRAM = """\
import atexit
import os
import sys
import threading
import time


class Stop(BaseException):
    pass


class Opaque:
    def __repr__(self):
        return "<opaque exit value>"


def broken_cleanup():
    raise RuntimeError("cleanup failed")


def leave():
    print("leaving", flush=True)
    {body}


leave()
print("after leave()")
"""


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_EXITS else
                                               pytest.mark.slow) for n in EXITS])
def test_exit_paths_are_unchanged(tmp_path: Path, name: str) -> None:
    (tmp_path / "prog.py").write_text(EXIT_PROGRAM.replace("{body}", EXITS[name]))
    plain = run_python(["prog.py"], tmp_path)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "prog.py"], tmp_path)
    assert fa.stdout == plain.stdout
    assert _ADDRESS.sub(b"0x?", strip_summary(fa.stderr)) == _ADDRESS.sub(b"0x?", plain.stderr)
    assert fa.returncode == plain.returncode
    assert b"flowagent: run " in fa.stderr


_ADDRESS = re.compile(rb"0x[0-9a-f]+")
