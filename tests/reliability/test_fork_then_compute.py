"""After a fork, a program that only computes (no audited event, fewer calls than wake the
flusher) until it ends still has every call stored.

On Python 3.13 a program without threads of its own has the flusher stopped for each
``os.fork()`` and started again at its first audited event (an open, an import, a sleep,
...) or when its buffer asks for a flush, never while the fork's hooks run (3.13 counts the
process's threads after them for its warning). A parent or child that goes on with pure
computation, or waits in ``os.waitpid``, sends nothing until then: its calls wait in the
buffer (not visible live) and the exit's flush sends them, however the process ends.
"""

from __future__ import annotations

import sqlite3

import pytest

from helpers import PURE, needs_sys_monitoring, run_cli, run_python, strip_summary

pytestmark = pytest.mark.e2e

PROGRAM = """
import os, sys

def leaf(i):
    return i

def session(k):
    return sum(leaf(i) for i in range(k))

def compute(n):
    x = 0
    for i in range(n):  # nothing recorded, nothing audited
        x = (x * 31 + i) % 1000003
    return x

def child(end):
    session(200)
    pid = os.fork()  # the child forks too: its own flusher stops for that fork
    if pid == 0:
        session(5)
        compute(300000)
        os._exit(0)
    os.waitpid(pid, 0)
    session(300)
    compute(300000)
    if end == "exit":
        sys.exit(0)
    os._exit(0)

session(100)
for end in ("_exit", "exit"):
    pid = os.fork()
    if pid == 0:
        child(end)
    os.waitpid(pid, 0)
session(1000)
compute(2000000)
print("done", flush=True)
sys.exit(int(sys.argv[1]))
"""
# leaf calls: 100 + 2 x (200 + 5 + 300) + 1000
LEAF_CALLS = 100 + 2 * (200 + 5 + 300) + 1000
SESSIONS = 1 + 2 * 3 + 1


def _stored(db: str) -> tuple[int, int, int]:
    """(leaf calls, session calls, sessions stored as not complete) of the run."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        leaf = con.execute("SELECT SUM(n.calls) FROM graph_nodes n JOIN functions f "
                           "ON f.run_id = n.run_id AND f.fid = n.fid "
                           "WHERE f.name = '__main__:leaf'").fetchone()[0]
        sessions = con.execute("SELECT SUM(n.calls) FROM graph_nodes n JOIN functions f "
                               "ON f.run_id = n.run_id AND f.fid = n.fid "
                               "WHERE f.name = '__main__:session'").fetchone()[0]
        incomplete = con.execute("SELECT COUNT(*) FROM sessions "
                                 "WHERE NOT complete").fetchone()[0]
    finally:
        con.close()
    return int(leaf or 0), int(sessions or 0), int(incomplete or 0)


@pytest.mark.parametrize("backend,pure", [
    ("wrap", False), ("wrap", True), ("profile", False),
    pytest.param("monitor", False, marks=needs_sys_monitoring),
])
def test_calls_made_after_a_fork_reach_the_store_however_the_process_ends(
        tmp_path, monkeypatch, backend, pure):
    monkeypatch.setenv(PURE, "1" if pure else "0")
    (tmp_path / "prog.py").write_text(PROGRAM)
    plain = run_python(["prog.py", "3"], tmp_path, timeout=120)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--backend", backend,
                  "prog.py", "3"], tmp_path, timeout=240)
    assert (plain.returncode, plain.stdout, plain.stderr) == (3, b"done\n", b"")
    assert (fa.returncode, fa.stdout) == (3, b"done\n"), fa.stderr
    assert strip_summary(fa.stderr) == b""
    # One session is stored as not complete, as it should: the child ending by os._exit()
    # inside child() never returned from it.
    assert _stored(str(tmp_path / "data" / "flowagent.db")) == (LEAF_CALLS, SESSIONS, 1)
