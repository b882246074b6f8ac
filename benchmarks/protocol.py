"""How one measurement is taken: a fresh process, its wall and CPU time, its peak RSS, the
line the workload printed, and (for flowagent) what reached the store and the wire.

Each child is started in its own session under ``/usr/bin/time -f %M``, which reports the
peak RSS of the child *and its waited-for descendants* (for ``flowagent run``: the
launcher, the program and the sidecar), so ``tree_maxrss_kb`` is the largest of them. (Not
``os.wait4`` from here: a child started with vfork inherits this orchestrator's RSS
high-water mark through ``exec``.) The program's own peak RSS is what ``run_workload.py``
reports from inside (``rss_kb``, from VmHWM).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from typing import Any

import wire
from modes import ROOT, Ctx, Mode, Workload

TIMEOUT_S = 900
TIME = "/usr/bin/time"  # GNU time; benchmarks/setup.sh installs it when missing


def _parse(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        for tok in line.split():
            key, sep, value = tok.partition("=")
            if not sep or key not in ("workload", "calls", "result", "elapsed_ns", "cpu_ns",
                                      "rss_kb", "counted_calls", "otel_spans"):
                continue
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = value
    return out


def run_process(argv: list[str], env_extra: dict[str, str], cwd: str = ROOT,
                timeout: float = TIMEOUT_S) -> dict[str, Any]:
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("FLOWAGENT_", "MONKEYTYPE_", "MT_"))]:
        del env[key]
    # Every mode runs as it would on a user's machine, with bytecode caches written and read
    # (a mode that measures a cold cache sets PYTHONDONTWRITEBYTECODE itself).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(env_extra)
    timefile = None
    if os.access(TIME, os.X_OK):
        fd, timefile = tempfile.mkstemp(prefix="fa-bench-time-")
        os.close(fd)
        argv = [TIME, "-f", "%M", "-o", timefile, *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
        timed_out = []

        def kill() -> None:
            timed_out.append(True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group only
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _pid, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter_ns() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    tree_rss = ru.ru_maxrss
    if timefile is not None:
        try:
            with open(timefile) as f:
                tree_rss = int(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(timefile)
    rec = _parse(stdout)
    rec.update(rc=proc.returncode, wall_ns=wall,
               proc_cpu_ns=int((ru.ru_utime + ru.ru_stime) * 1e9),
               tree_maxrss_kb=tree_rss, timed_out=bool(timed_out))
    if proc.returncode != 0 or timed_out:
        rec["stderr_tail"] = stderr.strip().splitlines()[-8:]
    return rec


def store_stats(data_dir: str) -> dict[str, Any] | None:
    """The run's row of the flowagent store (produced / stored / dropped events)."""
    db = os.path.join(data_dir, "flowagent.db")
    if not os.path.exists(db):
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("SELECT * FROM runs ORDER BY started_ns DESC LIMIT 1").fetchone()
            stored = con.execute("SELECT COALESCE(SUM(stored_events), 0) FROM processes"
                                 ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    if row is None:
        return None
    keys = ("backend", "sessions", "calls", "errors", "produced_events", "dropped_events",
            "dropped_batches", "corrupt_frames", "agent_errors", "processes", "status")
    out = {k: row[k] for k in keys if k in row.keys()}
    out["stored_events"] = stored
    return out


def measure(workload: Workload, mode: Mode, n: int | None, keep_data: str | None = None
            ) -> dict[str, Any]:
    """One fresh process of ``mode`` on ``workload``; flowagent's store and rings are read
    afterwards, then the run's temporary directory is removed (or moved to ``keep_data``)."""
    tmp = tempfile.mkdtemp(prefix=f"fa-bench-{workload.key}-{mode.key}-")
    try:
        argv, env = mode.build(Ctx(workload, n, tmp))
        rec = run_process(argv, env)
        data = os.path.join(tmp, "data")
        if mode.records or mode.family == "flowagent":
            st = store_stats(data)
            if st is not None:
                rec["store"] = st
            if os.path.isdir(data):
                ws = wire.wire_stats(data)
                if ws["rings"]:
                    rec["wire"] = ws
        if keep_data and os.path.isdir(data):
            shutil.rmtree(keep_data, ignore_errors=True)
            shutil.move(data, keep_data)
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
