"""Data for the viewer tests: recordings made with the real ``flowagent run``, hostile rows.

Imported by ``conftest.py`` and by tests that need the names (a module with its own name, so
it never clashes with the other ``conftest`` modules of the suite).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowagent.store.api import db_path
from flowagent.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"

XSS = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_CLOSE = "</script><script>alert(2)</script>"
HOSTILE_RUN = "20990101-000000-evil"
HOSTILE_SESSION = "evilpk-1"
HOSTILE_SESSION_NOT_KEPT = "evilpk-2"  # retention dropped its call tree
HOSTILE_FUNCTION = f"evil.{XSS}:{XSS}.{XSS_IMG}"
HOSTILE_FIELD = "<b>"

HOSTILE_APP = '''
    """A program whose recorded names try to inject markup into the viewer."""

    Evil = type("<img src=x onerror=alert(1)>", (Exception,), {})


    class Payload:
        pass


    def handler(payload, options):
        if options.get("</script><script>alert(2)</script>"):
            raise Evil("boom")
        return {"<script>alert(1)</script>": 1}


    def main():
        for flag in (False, True):
            try:
                handler(Payload(), {"</script><script>alert(2)</script>": flag, "<b>": "x"})
            except Exception:
                pass


    if __name__ == "__main__":
        main()
'''


# A program with planted facts for the stats page: 6 sessions of handle() whose dict argument
# gains a "coupon" field from the 4th call on (shape drift), 2 sessions of safe_lookup() that
# catch a KeyError raised below them (a handled cluster) and 1 session of explode() whose
# exception escapes the session (an unhandled cluster; the module level catches it).
PLANTED_APP = '''
    class OutOfStock(Exception):
        pass


    def price(order):
        return order["qty"] * 3


    def handle(order):
        return price(order)


    def lookup(key):
        return {"a": 1}[key]


    def safe_lookup(key):
        try:
            return lookup(key)
        except KeyError:
            return None


    def explode(sku):
        raise OutOfStock(sku)


    if __name__ == "__main__":
        for i in range(6):
            order = {"sku": f"s{i}", "qty": i}
            if i >= 3:
                order["coupon"] = "SAVE"
            handle(order)
        safe_lookup("x")
        safe_lookup("y")
        try:
            explode("zz")
        except OutOfStock:
            pass
'''


# A program with a planted flow for the flow and sequence views: 20 sessions of handle(i).
# Every one calls validate(); i % 4 == 0 (5 sessions) returns cached(); the 15 others call
# Store.load(), which raises NotFound for i = 3, 13, 18 (handle() handles it: 3 partials),
# and the 12 that loaded call View.render(). Session i = 7 also runs Audit.record() in a
# thread of its own, joined before it returns.
FLOW_APP = '''
    import threading


    class NotFound(Exception):
        pass


    class Store:
        def load(self, i):
            if i % 5 == 3:
                raise NotFound(i)
            return {"id": i, "name": "x"}


    class View:
        def render(self, row):
            return f"<p>{row['name']}</p>"


    class Audit:
        def record(self, i):
            return i


    def validate(i):
        return i >= 0


    def cached(i):
        return "hit"


    def handle(i):
        validate(i)
        if i % 4 == 0:
            return cached(i)
        if i == 7:
            t = threading.Thread(target=Audit().record, args=(i,), name="audit")
            t.start()
            t.join()
        try:
            row = Store().load(i)
        except NotFound:
            return None
        return View().render(row)


    if __name__ == "__main__":
        for i in range(20):
            handle(i)
'''
FLOW_SESSIONS = 20


# The same program recorded twice for comparing runs: "v2" calls fresh() (new, raises a
# ValueError once, handled) instead of legacy() (gone), and its fetch() got slower by 2 ms.
COMPARE_APP = '''
    import sys
    import time

    V2 = sys.argv[1:] == ["v2"]


    def fetch(i):
        if V2:
            time.sleep(0.002)
        return i


    def legacy(i):
        return i


    def fresh(i):
        if i == 3:
            raise ValueError(i)
        return i


    def handle(i):
        fetch(i)
        if V2:
            try:
                fresh(i)
            except ValueError:
                pass
        else:
            legacy(i)


    if __name__ == "__main__":
        for i in range(8):
            handle(i)
'''


def clean_env() -> dict[str, str]:
    """Our environment minus FLOWAGENT_* settings, with this checkout importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLOWAGENT_") and k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def flowagent(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m flowagent ARGS`` in a subprocess; fails the test with its output on error."""
    proc = subprocess.run([sys.executable, "-m", "flowagent", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"flowagent {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def record_demo(data_dir: Path) -> None:
    flowagent("run", "--data-dir", str(data_dir), "demo/run_demo.py", cwd=REPO)


def add_hostile_run(data_dir: Path) -> None:
    """A run written row by row (as the sidecar would) with markup in every name."""
    store = SQLiteStore(db_path(str(data_dir)))
    t0 = 1_900_000_000_000_000_000
    with store.transaction() as db:
        db.execute("INSERT INTO runs(run_id, started_ns, ended_ns, argv, cwd, status, exit_code, "
                   "backend, sessions, calls, errors, dropped_events, corrupt_frames, "
                   "agent_errors) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, t0, t0 + 10**9, json.dumps([XSS, XSS_CLOSE]), f"/tmp/{XSS}",
                    "finished", 1, "wrap", 1, 2, 1, 3, 1, 2))
        db.execute("INSERT INTO processes(run_id, pk, pid, ppid, info, started_ns, "
                   "dropped_events) VALUES(?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, "evilpk", 99, 1,
                    json.dumps({"threads": {"7": XSS}, "argv": [XSS, XSS_CLOSE]}), t0, 3))
        db.executemany("INSERT INTO process_samples(run_id, pid, ts_ns, cpu_s, rss_bytes) "
                       "VALUES(?,?,?,?,?)", [(HOSTILE_RUN, 99, t0 + i * 10**8, 0.01 * i,
                                              (30 + i % 3) << 20) for i in range(5)])
        fns = [(1, HOSTILE_FUNCTION, f"evil.{XSS}", f"{XSS}.{XSS_IMG}", "method", ["self", XSS]),
               (2, f"evil:{XSS_CLOSE}", "evil", XSS_CLOSE, "function", [])]
        for fid, name, module, qual, kind, params in fns:
            db.execute("INSERT INTO functions(run_id, fid, name, module, qualname, file, line, "
                       "kind, params) VALUES(?,?,?,?,?,?,?,?,?)",
                       (HOSTILE_RUN, fid, name, module, qual, f"/x/{XSS}.py", 1, kind,
                        json.dumps(params)))
        s_in = store.shape_id(json.dumps([XSS_IMG, f"dict{{{XSS}:int}}"]))
        s_out = store.shape_id(f"list[{XSS_CLOSE}]")
        s_exc = store.shape_id(f"evil.{XSS_IMG}")
        db.execute("INSERT INTO main.sessions(sid, session_id, run_id, name, root_fid, pid, pk, "
                   "thread, result, complete, started_ns, ended_ns, duration_ns, calls, errors, "
                   "variant, tree_kept) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (10_000_001, HOSTILE_SESSION, HOSTILE_RUN, f"<request>:GET /{XSS}", 1, 99,
                    "evilpk", XSS, "error", 1, t0, t0 + 5000, 5000, 2, 1, "v", 1))
        db.execute("INSERT INTO main.sessions(sid, session_id, run_id, name, root_fid, pid, pk, "
                   "thread, result, complete, started_ns, ended_ns, duration_ns, calls, errors, "
                   "variant, tree_kept) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (10_000_002, HOSTILE_SESSION_NOT_KEPT, HOSTILE_RUN, f"<request>:GET /{XSS}",
                    1, 99, "evilpk", XSS, "success", 1, t0 + 10**6, t0 + 10**6 + 10, 10, 1, 0,
                    "v", 0))
        store.add_calls(HOSTILE_SESSION, [
            (1, 0, 1, 0, s_in, s_out, 2, 0, t0, t0 + 5000, 7),
            (2, 1, 2, 1, 0, 0, 1, s_exc, t0 + 1000, t0 + 2000, 7),
        ])
        nodes = "run_id, fid, calls, errors, partials, total_ns, self_ns, min_ns, max_ns, roots"
        db.execute(f"INSERT INTO graph_nodes({nodes}) VALUES(?,?,?,?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, 1, 1, 0, 1, 5000, 4000, 5000, 5000, 1))
        db.execute(f"INSERT INTO graph_nodes({nodes}) VALUES(?,?,?,?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, 2, 1, 1, 0, 1000, 1000, 1000, 1000, 0))
        db.execute("INSERT INTO graph_edges(run_id, caller_fid, callee_fid, result, count, "
                   "total_ns) VALUES(?,?,?,?,?,?)", (HOSTILE_RUN, 1, 2, 1, 1, 1000))
        shapes = "run_id, fid, io, shape_sid, count, first_session"
        db.execute(f"INSERT INTO shape_counts({shapes}) VALUES(?,?,?,?,?,?)",
                   (HOSTILE_RUN, 1, "in", s_in, 1, HOSTILE_SESSION))
        db.execute(f"INSERT INTO shape_counts({shapes}) VALUES(?,?,?,?,?,?)",
                   (HOSTILE_RUN, 1, "out", s_out, 1, HOSTILE_SESSION))
        # A field named like markup appears in the second session: shape drift (the shape
        # grammar takes "<b>" as a key; a key with spaces would make the shape unparsable).
        for sh, first in (("dict{a:int}", HOSTILE_SESSION),
                          (f"dict{{{HOSTILE_FIELD}:str,a:int}}", HOSTILE_SESSION_NOT_KEPT)):
            db.execute(f"INSERT INTO shape_counts({shapes}) VALUES(?,?,?,?,?,?)",
                       (HOSTILE_RUN, 2, "out", store.shape_id(sh), 1, first))
        db.execute("INSERT INTO variants(run_id, variant, root_fid, count, errors, hist, "
                   "first_ns, examples) VALUES(?,?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, XSS, 1, 2, 1, None, t0,
                    json.dumps([HOSTILE_SESSION, HOSTILE_SESSION_NOT_KEPT])))
        db.execute("INSERT INTO error_clusters(run_id, exc_sid, fid, path, handled, count, "
                   "first_ns, last_ns, examples) VALUES(?,?,?,?,?,?,?,?,?)",
                   (HOSTILE_RUN, s_exc, 2, json.dumps([HOSTILE_FUNCTION, f"evil:{XSS_CLOSE}"]),
                    1, 1, t0, t0, json.dumps([HOSTILE_SESSION])))
        db.execute("INSERT INTO paths(run_id, path, count) VALUES(?,?,?)",
                   (HOSTILE_RUN, json.dumps([HOSTILE_FUNCTION, f"evil:{XSS_CLOSE}"]), 1))
    store.close()


# -- a run being recorded ------------------------------------------------------------

LIVE_RUN = "20990202-000000-live"


def start_live_run(store: SQLiteStore) -> None:
    """A run as the sidecar starts it: status 'running', no end, no totals yet."""
    with store.transaction() as db:
        db.execute("INSERT INTO runs(run_id, started_ns, status, argv) VALUES(?,?,?,?)",
                   (LIVE_RUN, time.time_ns(), "running", json.dumps(["app.py"])))
        db.execute("INSERT INTO functions(run_id, fid, name, module, qualname, kind, params) "
                   "VALUES(?,?,?,?,?,?,?)", (LIVE_RUN, 1, "app:handle", "app", "handle", "function",
                                              "[]"))
        db.execute("INSERT INTO functions(run_id, fid, name, module, qualname, kind, params) "
                   "VALUES(?,?,?,?,?,?,?)", (LIVE_RUN, 2, "app:helper", "app", "helper", "function",
                                              "[]"))


def add_live_session(store: SQLiteStore, n: int, *, finished: bool = True) -> None:
    """One session of the live run (open when not ``finished``), with its aggregates."""
    t = 1_900_000_000_000_000_000 + n * 1000
    with store.transaction() as db:
        db.execute("INSERT INTO main.sessions(sid, session_id, run_id, name, root_fid, pid, pk, "
                   "thread, result, complete, started_ns, ended_ns, duration_ns, calls, errors, "
                   "tree_kept) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (n, f"live-{n}", LIVE_RUN, "app:handle" if finished else None, 1, 1, "pk",
                    "MainThread", "success" if finished else None, 1 if finished else 0, t,
                    t + 500 if finished else None, 500 if finished else None, 2, 0, 1))
        if finished:
            db.execute("INSERT OR IGNORE INTO graph_nodes(run_id, fid, calls, errors, partials, "
                       "total_ns, self_ns, min_ns, max_ns, roots) VALUES(?,1,0,0,0,0,0,500,500,0)",
                       (LIVE_RUN,))
            db.execute("UPDATE graph_nodes SET calls=calls+1, roots=roots+1, total_ns=total_ns+500"
                       " WHERE run_id=? AND fid=1", (LIVE_RUN,))
            if n == 3:  # a new function and edge appear mid-run
                db.execute("INSERT INTO graph_nodes(run_id, fid, calls, errors, partials, "
                           "total_ns, self_ns, min_ns, max_ns, roots) "
                           "VALUES(?,2,1,0,0,100,100,100,100,0)", (LIVE_RUN,))
                db.execute("INSERT INTO graph_edges(run_id, caller_fid, callee_fid, result, "
                           "count, total_ns) VALUES(?,1,2,0,1,100)", (LIVE_RUN,))


# -- the viewer as a server process -----------------------------------------------------

START_TIMEOUT = 30


@functools.lru_cache(maxsize=1)
def _view_command() -> tuple[str, ...]:
    probe = subprocess.run([sys.executable, "-m", "flowagent", "view", "--help"], cwd=REPO,
                           env=clean_env(), capture_output=True, text=True, timeout=60)
    if probe.returncode == 0 and "--token" in probe.stdout:
        return (sys.executable, "-m", "flowagent", "view")
    return (sys.executable, "-m", "flowagent.cli.view")


def view_command() -> list[str]:
    """``python -m flowagent view`` once the CLI knows the command, else the module itself."""
    return list(_view_command())


@contextmanager
def serve(*args: str, cmd: list[str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the viewer, read its URL from the first stdout line (with a timeout), stop it.

    stderr goes to a file, not a pipe: a server that logs a lot must never block on it.
    """
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen([*(cmd or view_command()), *args], cwd=REPO, env=clean_env(),
                                stdout=subprocess.PIPE, stderr=errors, text=True)
        line: list[str] = []

        def first_line() -> None:
            if proc.stdout is not None:
                line.append(proc.stdout.readline())

        reader = threading.Thread(target=first_line, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        try:
            if not line or not line[0]:
                proc.kill()
                proc.wait()
                errors.seek(0)
                raise AssertionError(f"no URL within {START_TIMEOUT}s: {errors.read()}")
            m = re.fullmatch(r"flowagent view: (http://\S+)\n", line[0])
            assert m, line[0]
            yield m.group(1), proc
        finally:
            errors.seek(0)
            logged = errors.read()
            if "Traceback" in logged:  # shown with a failing test's captured output
                print(f"viewer server log:\n{logged}")
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
            errors.seek(0)
            logged = errors.read()
            if "Traceback" in logged:  # a 500 in a page test: show the server's side of it
                sys.stderr.write(f"viewer server stderr:\n{logged}\n")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
