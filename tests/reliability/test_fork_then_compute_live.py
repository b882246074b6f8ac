"""A parent that forks and then only computes still has its calls stored while it runs.

The flusher of a program without threads of its own is stopped for each ``os.fork()`` on
Python 3.12+ (so the program stays single-threaded, as Python's fork warning counts it).
On 3.13, which counts the threads after the parent's after-fork hooks, it starts again as
``os.fork()`` returns (the C twin wraps it); records made after the fork reach the store
within the flush interval, not only at exit, so a process killed during a long
computation keeps them. The pure twin starts it again at the program's next audited event
(documented in RELIABILITY.md), which this program never makes before it is told to end.

The program computes without an audited event or a recorded call until the test has seen
its post-fork session in the store (through the sidecar, as the viewer would), then it is
told to stop by SIGUSR1, whose handler only sets a flag.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowagent.errors import StoreError
from flowagent.store.sqlite import SQLiteStore

from helpers import (PURE, _clean_env, flowagent_cmd, needs_sys_monitoring, run_cli, run_python,
                     strip_summary, wait_until, write_files)

pytestmark = pytest.mark.e2e

PROGRAM = """
import os, pty, signal, sys

stop = []

def on_usr1(signum, frame):
    stop.append(signum)

def before_fork(k):
    return sum(range(k))

def after_fork(k):
    return sum(range(k))

signal.signal(signal.SIGUSR1, on_usr1)
before_fork(10)
with open("pid.tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename("pid.tmp", "pid")
pid = FORK
if pid == 0:
    os._exit(0)
after_fork(20)
x = 0
while not stop:  # nothing audited, nothing recorded: until the test has seen after_fork
    x = (x * 31 + 1) % 1000003
os.waitpid(pid, 0)
print("done", flush=True)
"""

PURE_ON_313 = pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="the pure twin restarts the flusher at the program's next audited event (3.13)")


def _stored(db: Path) -> bool:
    """Whether the parent's post-fork session is in the store yet."""
    try:
        store = SQLiteStore(str(db), readonly=True)  # its sessions view: either form
        try:
            row = store.db.execute("SELECT COUNT(*) FROM sessions "
                                   "WHERE name = '__main__:after_fork'").fetchone()
        finally:
            store.close()
    except (sqlite3.Error, StoreError):
        return False  # not created yet
    return bool(row and row[0])


@pytest.mark.parametrize("fork", ["os.fork()", "pty.fork()[0]"])
@pytest.mark.parametrize("backend,pure", [
    ("wrap", False), ("profile", False),
    pytest.param("monitor", False, marks=needs_sys_monitoring),
    pytest.param("wrap", True, marks=PURE_ON_313),
    pytest.param("profile", True, marks=PURE_ON_313),
])
def test_calls_after_a_fork_are_stored_while_the_parent_computes(
        tmp_path: Path, backend: str, pure: bool, fork: str) -> None:
    write_files(tmp_path, {"prog.py": PROGRAM.replace("FORK", fork)})
    data = tmp_path / "data"
    env = {PURE: "1" if pure else "0",
           "PYTHONWARNINGS": "always::DeprecationWarning:__main__"}
    proc = subprocess.Popen(flowagent_cmd("run", "--data-dir", str(data), "--backend", backend,
                                          "prog.py"),
                            cwd=tmp_path, env=_clean_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: (tmp_path / "pid").exists(), "the program to start", proc=proc)
        program = int((tmp_path / "pid").read_text())
        # Generous: the flush interval is 50 ms; this bounds only a wait that would hang.
        wait_until(lambda: _stored(data / "flowagent.db"),
                   "the session recorded after the fork to be stored while the parent runs",
                   timeout=120, proc=proc)
        os.kill(program, signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (0, b"done\n"), err
    assert strip_summary(err) == b""  # no fork warning, nothing else


THREADED = """
import inspect, os, pickle, threading, time

def leaf(i):
    return i

def main():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    leaf(1)
    pid = os.fork()  # the program has a thread of its own: Python warns, pointing here
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    stop.set()
    t.join()
    for f in (os.fork, os.forkpty):
        print(f.__name__, f.__qualname__, inspect.signature(f), f.__doc__ == FORK_DOCS[f.__name__],
              pickle.loads(pickle.dumps(f)) is f)
    try:
        os.fork(1)
    except TypeError as exc:
        print("TypeError", exc)

import posix
FORK_DOCS = {"fork": posix.fork.__doc__, "forkpty": posix.forkpty.__doc__}
main()
"""


@pytest.mark.parametrize("backend,pure", [("wrap", False), ("profile", False),
                                          ("wrap", True)])
def test_a_fork_looks_and_warns_as_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           backend: str, pure: bool) -> None:
    """The fork functions the program sees behave as plainly: the warning about forking a
    multi-threaded process points at the program's line, and their name, signature, doc and
    pickling are the same."""
    monkeypatch.setenv(PURE, "1" if pure else "0")
    write_files(tmp_path, {"prog.py": THREADED})
    env = {"PYTHONWARNINGS": "always::DeprecationWarning:__main__"}
    plain = run_python(["prog.py"], tmp_path, env=env)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--backend", backend,
                  "prog.py"], tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr
    assert b"True True" in plain.stdout and b"TypeError" in plain.stdout
    assert (fa.returncode, fa.stdout) == (plain.returncode, plain.stdout), fa.stderr
    line = (tmp_path / "prog.py").read_text().splitlines().index(
        "    pid = os.fork()  # the program has a thread of its own: Python warns, pointing here")
    warned = f"prog.py:{line + 1}: DeprecationWarning".encode() in plain.stderr
    assert warned == (sys.version_info >= (3, 12)), plain.stderr
    assert _without_pid(strip_summary(fa.stderr)) == _without_pid(plain.stderr)


def _without_pid(stderr: bytes) -> bytes:
    return re.sub(rb"pid=\d+", b"pid=N", stderr)
