"""Every Python process of a run is recorded into the same run: subprocess children,
multiprocessing with fork and spawn, a bare os.fork() child, and gunicorn workers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import REPO, _clean_env, flowagent_cmd, record

pytestmark = pytest.mark.e2e

WORK = {"work.py": """
    def square(x):
        return helper(x) * x

    def helper(x):
        return x
"""}

PROGRAM = """
import multiprocessing as mp, os, subprocess, sys
import work

def run_pool(method):
    with mp.get_context(method).Pool(2) as pool:
        return pool.map(work.square, range(6))

def child():
    out = subprocess.run([sys.executable, "-c", "import work; print(work.square(7))"],
                         capture_output=True, text=True)
    return out.stdout.strip()

def forked():
    pid = os.fork()
    if pid == 0:
        work.square(11)
        os._exit(0)
    os.waitpid(pid, 0)

if __name__ == "__main__":
    print(run_pool("fork"), run_pool("spawn"), child())
    forked()
"""


def test_children_of_every_kind_are_recorded(tmp_path, backend):
    rec = record(PROGRAM, tmp_path, backend=backend, extra_files=WORK)
    assert rec.stdout == "[0, 1, 4, 9, 16, 25] [0, 1, 4, 9, 16, 25] 49\n"
    sessions = rec.sessions()
    main_pid = next(s["pid"] for s in sessions if s["name"] == "__main__:run_pool")
    # every child's work hangs under the call that started it: 6 per pool (fork and
    # spawn), 1 in the subprocess, 1 in the bare fork
    assert sorted(s["name"] for s in sessions) == [
        "__main__:child", "__main__:forked", "__main__:run_pool", "__main__:run_pool"]
    for s in sessions:
        g = rec.tree(s["session_id"])
        names = [n["function_name"] for n in g["nodes"]]
        squares = [n for n in g["nodes"] if n["function_name"] == "work:square"]
        # pool workers run side by side: their calls interleave in time, each helper stays
        # under its own square
        assert len(names) == 1 + 2 * len(squares)
        assert sorted(names[1:]) == ["work:helper"] * len(squares) + ["work:square"] * len(squares)
        square_ids = {c["id"] for c in squares}
        assert all(n["parent_id"] in square_ids for n in g["nodes"]
                   if n["function_name"] == "work:helper")
        assert len(squares) == {"__main__:run_pool": 6, "__main__:child": 1,
                                "__main__:forked": 1}[s["name"]]
        for c in squares:
            assert c["parent_id"] == g["nodes"][0]["id"]
            assert c["pid"] != main_pid
        assert s["calls"] == len(names)  # the session's calls, in all its processes
    info = rec.run_info()
    assert info["dropped_events"] == 0
    assert info["sessions"] == 4
    assert info["produced_events"] == info["calls"] == 4 + 14 * 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            # A refused connection fails at once; an accepted one is waited for, or a slow
            # first answer (a loaded machine) would be asked again and served twice.
            urllib.request.urlopen(url, timeout=30).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.mark.skipif(shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None,
                    reason="gunicorn is not installed next to this interpreter")
def test_gunicorn_two_workers_serving_real_http(tmp_path):
    port = _free_port()
    data = tmp_path / "data"
    env = _clean_env({"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    proc = subprocess.Popen(
        flowagent_cmd("run", "--data-dir", str(data), "--", "gunicorn", "--chdir",
                      str(REPO / "demo"), "-w", "2", "-b", f"127.0.0.1:{port}",
                      "gunicorn_app:app"),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", time.monotonic() + 30)

        def get(i: int) -> int:
            path = "/products/KIT-PAN-01" if i % 2 else "/products/NOPE"
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
            except urllib.error.HTTPError as e:
                return e.code

        with ThreadPoolExecutor(8) as pool:  # concurrent clients spread over both workers
            codes = list(pool.map(get, range(40)))
        assert codes.count(200) == 20 and codes.count(404) == 20
    finally:
        proc.terminate()  # forwarded to the gunicorn master: graceful shutdown
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"flowagent: run" in err

    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    requests = [s for s in store.sessions(limit=10_000) if s["name"].startswith("<request>")]
    by_name = {}
    for s in requests:
        by_name.setdefault(s["name"], []).append(s)
    assert len(by_name["<request>:GET /products/<sku>"]) == 40
    assert len(by_name["<request>:GET /health"]) >= 1  # the readiness poll retries under load
    workers = {s["pid"] for s in store.sessions(limit=10_000)}
    assert len(workers) == 2, "both gunicorn workers' sessions are stored"
    assert {p["pid"] for p in store.processes(store.latest_run())} == workers
    not_found = [s for s in by_name["<request>:GET /products/<sku>"] if s["result"] == "partial"]
    assert len(not_found) == 20  # the view caught Catalog.get's KeyError and returned 404
    g = store.session_graph(not_found[0]["session_id"])
    assert g["nodes"][0]["output_shape"] == "HTTP 404"
