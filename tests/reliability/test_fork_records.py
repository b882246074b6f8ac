"""Records across ``os.fork()``: none lost, none sent twice.

A forked child starts with an empty buffer: the records its parent had not flushed yet are
the parent's to send (the C recorder's buffer is not even copied into the child), and the
child records only what it does itself. These programs fork while threads record flat out,
while a large backlog waits in the buffer, from a thread other than the main one, and end
their children through ``os._exit`` and through ``sys.exit``; every count in the store must
be exactly what the program did, on every backend and both recorder twins.
"""

from __future__ import annotations

import sqlite3
import sys

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


def _counts(rec) -> dict[str, int]:
    """Calls stored per function name, over every process of the run."""
    db = sqlite3.connect(f"file:{rec.db}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT f.name, n.calls FROM graph_nodes n JOIN functions f "
                          "ON f.run_id = n.run_id AND f.fid = n.fid").fetchall()
    finally:
        db.close()
    out: dict[str, int] = {}
    for name, calls in rows:
        out[name] = out.get(name, 0) + calls
    return out


THREADS_FORKING = """
import os, sys, threading

def leaf(i):
    return i

def work(k):
    for i in range(k):
        leaf(i)

def loop(iters, started):
    started.release()
    for _ in range(iters):
        work(5)

def child_leaf(i):
    return i

def child(n):
    for i in range(n):
        child_leaf(i)

def fork_once(f):
    pid = os.fork()
    if pid == 0:
        child(10 + f)
        if f % 2:
            os._exit(0)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status

def main(threads, iters, forks):
    started = threading.Semaphore(0)
    ts = [threading.Thread(target=loop, args=(iters, started)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        started.acquire()  # every thread is recording before the first fork
    for f in range(forks):
        fork_once(f)
    # and one fork from a thread that is not the main one
    t = threading.Thread(target=fork_once, args=(forks,))
    t.start()
    t.join()
    for t in ts:
        t.join()
    print("done")

if __name__ == "__main__":
    main(3, 1500, 6)
"""


def test_forks_while_threads_record_lose_and_repeat_nothing(tmp_path, backend):
    rec = record(THREADS_FORKING, tmp_path, backend=backend, timeout=180,
                 env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert rec.stdout == "done\n"
    counts = _counts(rec)
    forks = 7
    assert counts.get("__main__:leaf") == 3 * 1500 * 5
    assert counts.get("__main__:work") == 3 * 1500
    assert counts.get("__main__:loop") == 3
    assert counts.get("__main__:fork_once") == forks  # the parent's; a child's is stale
    assert counts.get("__main__:child") == forks
    assert counts.get("__main__:child_leaf") == sum(10 + f for f in range(forks))
    assert counts.get("__main__:main") == 1
    assert rec.run_info()["processes"] == 1 + forks


BACKLOG_FORKING = """
import os, sys

def leaf(i):
    return i

def burst(n):
    for i in range(n):
        leaf(i)

def child_leaf(i):
    return i

def main(rounds, n):
    for r in range(rounds):
        burst(n)  # buffered, not flushed yet, when the fork comes
        pid = os.fork()
        if pid == 0:
            for i in range(7):
                child_leaf(i)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done")

if __name__ == "__main__":
    main(4, 20000)
"""


def test_a_fork_with_a_backlog_leaves_it_to_the_parent(tmp_path, backend):
    rec = record(BACKLOG_FORKING, tmp_path, backend=backend, timeout=180)
    assert rec.stdout == "done\n"
    counts = _counts(rec)
    assert counts.get("__main__:leaf") == 4 * 20000
    assert counts.get("__main__:burst") == 4
    assert counts.get("__main__:child_leaf") == 4 * 7
    assert counts.get("__main__:main") == 1
    assert rec.run_info()["processes"] == 5


@pytest.mark.skipif(sys.platform != "linux", reason="the buffer's own mapping is Linux's")
def test_the_c_buffer_is_not_copied_into_a_forked_child(tmp_path):
    """The C twin's record buffer is a mapping the child does not get (MADV_DONTFORK): in
    the child, the parent's backlog is neither readable memory nor sent."""
    program = """
        import os
        from flowagent.agent import recorder

        def leaf(i):
            return i

        assert recorder.ACCELERATED
        for i in range(50000):
            leaf(i)
        pid = os.fork()
        if pid == 0:
            os.write(1, f"child {recorder.S.buffered}\\n".encode())
            leaf(1)
            os.write(1, f"child {recorder.S.buffered}\\n".encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", flush=True)
    """
    rec = record(program, tmp_path, backend="wrap", timeout=120,
                 env={PURE: "0", "FLOWAGENT_FLUSH_INTERVAL_MS": "10000"})
    assert rec.stdout == "child 0\nchild 1\nparent\n", rec.stderr
    assert _counts(rec).get("__main__:leaf") == 50001
