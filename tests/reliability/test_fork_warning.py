"""A single-threaded program forks under the agent exactly as plainly: no warning.

Python 3.12+ warns ("This process is multi-threaded, use of fork() may lead to deadlocks")
when a process with more than one thread forks; 3.12 counts the threads before the
parent's after-fork hooks run, 3.13 after them. The agent's flusher is a thread: it is
stopped for a fork of a program without threads of its own, and started again in the
parent only once the program goes on (3.13). Every program here forks in a different
situation (backlogs that wake the flusher between forks, an audited call between forks,
a child forking a grandchild, a fork deep in a recursion, the program's own after-fork
hooks) and must print the same, warnings included, on every backend and twin, and store
every call.
"""

from __future__ import annotations

import sqlite3

import pytest

from helpers import PURE, needs_sys_monitoring, run_cli, run_python, strip_summary

pytestmark = pytest.mark.e2e

# The fork warning is shown for __main__ by default; "always" shows it at every fork.
WARNINGS = {"PYTHONWARNINGS": "always::DeprecationWarning:__main__"}


@pytest.fixture(params=[pytest.param(("wrap", False), id="wrap"),
                        pytest.param(("wrap", True), id="wrap-pure"),
                        pytest.param(("profile", False), id="profile"),
                        pytest.param(("profile", True), id="profile-pure"),
                        pytest.param(("monitor", False), id="monitor",
                                     marks=needs_sys_monitoring),
                        pytest.param(("monitor", True), id="monitor-pure",
                                     marks=needs_sys_monitoring)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name, pure = request.param
    monkeypatch.setenv(PURE, "1" if pure else "0")
    return name


PROGRAMS = {
    # Bursts larger than what wakes the flusher early: it is asked for between forks.
    "backlogs": ("""
import os

def leaf(i):
    return i

def main():
    for r in range(5):
        for i in range(12000):
            leaf(i)
        pid = os.fork()
        if pid == 0:
            leaf(-1)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done")

main()
""", 5 * 12000 + 5),
    # An audited call (a sleep, an open) between two forks starts the flusher again.
    "audited-between": ("""
import os, time

def leaf(i):
    return i

def main():
    for r in range(4):
        leaf(r)
        pid = os.fork()
        if pid == 0:
            leaf(-1)
            os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)
        with open(os.devnull) as f:
            f.read()
    print("done")

main()
""", 4 + 4),
    # The child forks too: its own flusher is stopped for that fork.
    "grandchild": ("""
import os

def leaf(i):
    return i

def main():
    for i in range(3000):
        leaf(i)
    pid = os.fork()
    if pid == 0:
        for i in range(3000):
            leaf(i)
        pid2 = os.fork()
        if pid2 == 0:
            leaf(-2)
            os._exit(0)
        os.waitpid(pid2, 0)
        os._exit(0)
    os.waitpid(pid, 0)
    print("done")

main()
""", 6000 + 1),
    "deep": ("""
import os

def leaf(i):
    return i

def dive(d):
    if d == 0:
        for i in range(500):
            leaf(i)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return
    dive(d - 1)

dive(200)
dive(50)
print("done")
""", 1000 + 201 + 51),
    # The program's own after-fork hooks run after the agent's, audited calls in them
    # included, before Python 3.13 counts the threads.
    "own-hooks": ("""
import os, time

def leaf(i):
    return i

def after_in_parent():
    leaf(1)
    with open(os.devnull) as f:
        f.read()
    time.sleep(0.001)

os.register_at_fork(before=lambda: leaf(0), after_in_parent=after_in_parent)
for r in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("done")
""", 3 * 2),
}


def _leaf_calls(db: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT SUM(n.calls) FROM graph_nodes n JOIN functions f "
                           "ON f.run_id = n.run_id AND f.fid = n.fid "
                           "WHERE f.name IN ('__main__:leaf', '__main__:dive')").fetchone()
    finally:
        con.close()
    return int(rows[0] or 0)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_a_single_threaded_fork_prints_as_plainly(tmp_path, backend, program):
    source, calls = PROGRAMS[program]
    (tmp_path / "prog.py").write_text(source)
    plain = run_python(["prog.py"], tmp_path, env=WARNINGS)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--backend", backend,
                  "prog.py"], tmp_path, env=WARNINGS, timeout=180)
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, b"done\n", b"")
    assert (fa.returncode, fa.stdout) == (0, b"done\n")
    assert strip_summary(fa.stderr) == plain.stderr
    assert _leaf_calls(str(tmp_path / "data" / "flowagent.db")) == calls


GOES_ON = """
import os, sqlite3, sys, time

def leaf(i):
    return i

def after(i):
    return i

leaf(0)
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
after(1)  # its own session: stored once a flush sent it, while the program still runs
deadline = time.monotonic() + 60
seen = 0
while not seen and time.monotonic() < deadline:
    time.sleep(0.05)
    try:
        db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
        try:
            seen = db.execute("SELECT COUNT(*) FROM graph_nodes n JOIN functions f ON "
                              "f.run_id = n.run_id AND f.fid = n.fid "
                              "WHERE f.name = '__main__:after'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        pass
print("sent while running" if seen else "not sent")
"""


def test_after_a_fork_the_parent_flushes_while_it_runs(tmp_path, backend):
    """The flusher stopped for a fork runs again once the program goes on: what the parent
    records afterwards reaches the store before the program ends."""
    (tmp_path / "prog.py").write_text(GOES_ON)
    data = tmp_path / "data"
    fa = run_cli(["run", "--data-dir", str(data), "--backend", backend, "prog.py",
                  str(data / "flowagent.db")], tmp_path, env=WARNINGS, timeout=180)
    assert (fa.returncode, fa.stdout) == (0, b"sent while running\n"), fa.stderr
    assert strip_summary(fa.stderr) == b""
