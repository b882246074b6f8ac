"""More ways to fork with calls buffered: every call stored once, every session ended.

Each program forks while the process holds a backlog of calls that no flush has taken
yet: many forks in quick succession with backlogs around the flusher's batch size, a fork
at the bottom of a deep recursion whose child unwinds through the parent's stale calls,
children that fork grandchildren with backlogs of their own, and forks from a thread while
another thread records flat out. The store must hold exactly the calls each process made
(the calls open at a fork are the parent's) and no session may stay open, on every backend
and both recorder twins.
"""

from __future__ import annotations

import sqlite3

import pytest

from helpers import PURE, needs_sys_monitoring, record

pytestmark = pytest.mark.e2e


@pytest.fixture(params=[pytest.param(("wrap", False), id="wrap"),
                        pytest.param(("wrap", True), id="wrap-pure"),
                        pytest.param(("profile", False), id="profile"),
                        pytest.param(("monitor", False), id="monitor",
                                     marks=needs_sys_monitoring),
                        pytest.param(("monitor", True), id="monitor-pure",
                                     marks=needs_sys_monitoring)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name, pure = request.param
    monkeypatch.setenv(PURE, "1" if pure else "0")
    return name


def _stored(rec) -> tuple[dict[str, int], int]:
    """(calls stored per function name over every process, sessions stored as never ended)."""
    db = sqlite3.connect(f"file:{rec.db}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT f.name, n.calls FROM graph_nodes n JOIN functions f "
                          "ON f.run_id = n.run_id AND f.fid = n.fid").fetchall()
        open_ = db.execute("SELECT COUNT(*) FROM sessions WHERE complete = 0").fetchone()[0]
    finally:
        db.close()
    out: dict[str, int] = {}
    for name, calls in rows:
        out[name] = out.get(name, 0) + calls
    return out, open_


RAPID_FORKS = """
import os, sys

def leaf(i):
    return i

def burst(n):
    for i in range(n):
        leaf(i)

def child_leaf(i):
    return i

SIZES = [16384, 16385, 3000, 40000, 16383, 25000, 1, 32768, 9000, 50000, 100, 20000]

def main():
    for r, n in enumerate(SIZES):
        burst(n)
        pid = os.fork()
        if pid == 0:
            for i in range(r + 1):
                child_leaf(i)
            if r % 2:
                os._exit(0)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
    burst(7)
    print("done")

if __name__ == "__main__":
    main()
"""


def test_rapid_forks_with_backlogs_of_every_size(tmp_path, backend):
    rec = record(RAPID_FORKS, tmp_path, backend=backend, timeout=300)
    assert rec.stdout == "done\n"
    sizes = [16384, 16385, 3000, 40000, 16383, 25000, 1, 32768, 9000, 50000, 100, 20000]
    counts, never_ended = _stored(rec)
    assert counts.get("__main__:leaf") == sum(sizes) + 7
    assert counts.get("__main__:burst") == len(sizes) + 1
    assert counts.get("__main__:child_leaf") == sum(range(1, len(sizes) + 1))
    assert counts.get("__main__:main") == 1
    assert never_ended == 0
    assert rec.run_info()["processes"] == 1 + len(sizes)


DEEP_FORK = """
import os, sys

sys.setrecursionlimit(1000)

def leaf(i):
    return i

def burst(n):
    for i in range(n):
        leaf(i)

def child_leaf(i):
    return i

def after_fork(who):
    return who

def dive(depth, n):
    if depth == 0:
        burst(n)
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                child_leaf(i)
            return 0  # the child unwinds through the calls its parent had open
        os.waitpid(pid, 0)
        return pid
    return dive(depth - 1, n)

def main():
    for r in range(3):
        who = dive(150, 20000)
        after_fork(who)
        if who == 0:
            if r == 1:
                sys.exit(0)
            os._exit(0)
    print("done")

if __name__ == "__main__":
    main()
"""


def test_a_fork_deep_in_a_recursion(tmp_path, backend):
    rec = record(DEEP_FORK, tmp_path, backend=backend, timeout=300)
    assert rec.stdout == "done\n"
    counts, never_ended = _stored(rec)
    assert counts.get("__main__:leaf") == 3 * 20000
    assert counts.get("__main__:burst") == 3
    # The parent's: a child's returns from the calls open at its fork are not calls of it.
    assert counts.get("__main__:dive") == 3 * 151
    assert counts.get("__main__:child_leaf") == 3 * 5
    assert counts.get("__main__:after_fork") == 3 + 3  # the parent's and each child's
    assert counts.get("__main__:main") == 1
    assert never_ended == 0
    assert rec.run_info()["processes"] == 4


NESTED_FORKS = """
import os

def leaf(i):
    return i

def burst(n):
    for i in range(n):
        leaf(i)

def grandchild_leaf(i):
    return i

def in_child(n):
    burst(n)  # the child's own backlog when it forks
    pid = os.fork()
    if pid == 0:
        for i in range(3):
            grandchild_leaf(i)
        os._exit(0)
    os.waitpid(pid, 0)
    burst(11)

def main():
    for r in range(3):
        burst(18000)
        pid = os.fork()
        if pid == 0:
            in_child(17000 + r)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done")

if __name__ == "__main__":
    main()
"""


def test_children_that_fork_with_backlogs_of_their_own(tmp_path, backend):
    rec = record(NESTED_FORKS, tmp_path, backend=backend, timeout=300)
    assert rec.stdout == "done\n"
    counts, never_ended = _stored(rec)
    assert counts.get("__main__:leaf") == 3 * 18000 + sum(17000 + r for r in range(3)) + 3 * 11
    assert counts.get("__main__:burst") == 3 + 3 * 2
    assert counts.get("__main__:in_child") == 3
    assert counts.get("__main__:grandchild_leaf") == 3 * 3
    assert counts.get("__main__:main") == 1
    assert never_ended == 0
    assert rec.run_info()["processes"] == 1 + 3 + 3


THREAD_FORKS_WHILE_MAIN_RECORDS = """
import os, threading

def leaf(i):
    return i

def burst(n):
    for i in range(n):
        leaf(i)

def child_leaf(i):
    return i

def forker(forks, started):
    started.wait()
    for f in range(forks):
        burst(9000)
        pid = os.fork()
        if pid == 0:
            for i in range(4):
                child_leaf(i)
            os._exit(0)
        os.waitpid(pid, 0)

def main():
    started = threading.Event()
    t = threading.Thread(target=forker, args=(6, started))
    t.start()
    started.set()
    for _ in range(8):
        burst(10000)  # recording flat out while the other thread forks
    t.join()
    print("done")

if __name__ == "__main__":
    main()
"""


def test_forks_from_a_thread_while_the_main_thread_records(tmp_path, backend):
    rec = record(THREAD_FORKS_WHILE_MAIN_RECORDS, tmp_path, backend=backend, timeout=300,
                 env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert rec.stdout == "done\n"
    counts, never_ended = _stored(rec)
    assert counts.get("__main__:leaf") == 6 * 9000 + 8 * 10000
    assert counts.get("__main__:burst") == 6 + 8
    assert counts.get("__main__:forker") == 1
    assert counts.get("__main__:child_leaf") == 6 * 4
    assert counts.get("__main__:main") == 1
    assert never_ended == 0
    assert rec.run_info()["processes"] == 1 + 6
