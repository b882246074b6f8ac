"""Helpers of the reliability suite: programs started in the background, the processes of a
run (launcher, program, sidecar), and the accounting a run left in the store.

``tests/helpers.py`` runs a program to its end (``record``, ``run_cli``, ``run_python``); the
tests here also need to act *while* it runs (kill the program or the sidecar, stop the
sidecar, send signals), so they start it with :func:`launch` / :func:`start_plain` and watch
its output line by line.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from helpers import _clean_env, flowagent_cmd

from flowagent.store.sqlite import SQLiteStore

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
OFF_CONSUMER = 136  # ring header: pid of the sidecar reading the ring (u64)


class Running:
    """A process started in the background whose stdout and stderr are read as they come."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None,
                 stdin: bytes | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=_clean_env(env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin is not None else
            subprocess.DEVNULL,
            # Its own session: no controlling terminal (so the launcher forwards the signals
            # the tests send), and signals sent to our process group never reach it.
            start_new_session=True)
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        self.lines: list[tuple[float, bytes]] = []  # (monotonic time, stdout line)
        self._err = bytearray()
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self.lines.append((time.monotonic(), line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self._err += chunk

    def wait_line(self, prefix: bytes, timeout: float = 30) -> bytes:
        """The first stdout line starting with ``prefix`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._threads[0].is_alive()):
                    raise AssertionError(f"no line {prefix!r} from {self.argv} "
                                         f"(got {self.stdout!r}, stderr {bytes(self._err)!r})")
                self._cond.wait(min(left, 0.2))

    def wait(self, timeout: float = 60) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.argv} did not end within {timeout} s (deadlock?); "
                                 f"stdout {self.stdout[-2000:]!r}, stderr "
                                 f"{bytes(self._err)[-2000:]!r}") from None
        for t in self._threads:
            t.join(10)
        return rc

    def kill(self) -> None:
        """Kill the whole process group (the launcher, the program and the sidecar)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    @property
    def stdout(self) -> bytes:
        with self._cond:
            return b"".join(line for _, line in self.lines)

    @property
    def stderr(self) -> bytes:
        return bytes(self._err)


def launch(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
           stdin: bytes | None = None) -> Running:
    """``python -m flowagent ARGS`` (e.g. ``["run", "--data-dir", D, "prog.py"]``)."""
    return Running(flowagent_cmd(*args), cwd, env, stdin)


def start_plain(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
                stdin: bytes | None = None) -> Running:
    """Plain ``python ARGS``: the baseline."""
    return Running([sys.executable, *args], cwd, env, stdin)


# -- the processes of a run ----------------------------------------------------------------

def _children(launcher_pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(launcher_pid).children()
    except psutil.NoSuchProcess:
        return []


def _is_sidecar(p: psutil.Process) -> bool:
    try:
        return "flowagent.sidecar" in p.cmdline()
    except psutil.Error:
        return False


def sidecar_pid(launcher_pid: int, timeout: float = 20) -> int:
    """The sidecar: the launcher's child started as ``python -m flowagent.sidecar``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in _children(launcher_pid):
            if _is_sidecar(p):
                return p.pid
        time.sleep(0.02)
    raise AssertionError(f"no sidecar under launcher {launcher_pid}")


def program_pid(launcher_pid: int, timeout: float = 20) -> int:
    """The recorded program: the launcher's other child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in _children(launcher_pid):
            if not _is_sidecar(p):
                return p.pid
        time.sleep(0.02)
    raise AssertionError(f"no program under launcher {launcher_pid}")


def ring_consumer_pid(ring: Path) -> int:
    with open(ring, "rb") as f:
        f.seek(OFF_CONSUMER)
        return struct.unpack("<Q", f.read(8))[0]


def rings(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("runs/*/rings/*.ring"))


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive after {timeout} s")


# -- what a run stored -----------------------------------------------------------------------

def accounting(data_dir: Path, run_id: str | None = None) -> dict[str, Any]:
    """The loss accounting of a run, read straight from the SQLite store.

    ``produced`` is what the program's processes produced (the ``runs`` row counts dropped
    events in it), ``stored`` what the sidecar stored (per process; retention may since have
    pruned old session trees to their summary row), ``stored_rows`` the calls the store now
    holds that are real events (``SQLiteStore.stored_calls``: a placeholder for a call known
    only through its children is not an event), ``dropped`` the counted losses.
    """
    db = sqlite3.connect(f"file:{data_dir / 'flowagent.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        if run_id is None:
            run_id = db.execute("SELECT run_id FROM runs ORDER BY started_ns DESC LIMIT 1"
                                ).fetchone()[0]
        run = dict(db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone())
        store = SQLiteStore(str(data_dir / "flowagent.db"), readonly=True)
        try:
            rows = store.stored_calls(run_id)
            # through the store's connection: its sessions view holds either form
            sessions = [dict(r) for r in store.db.execute(
                "SELECT session_id, name, result, complete, calls FROM sessions WHERE "
                "run_id=? ORDER BY sid", (run_id,))]
        finally:
            store.close()
        stored, placeholders = rows["calls"], rows["placeholders"]
        per_process = db.execute(
            "SELECT COALESCE(SUM(stored_events),0), COALESCE(SUM(duplicate_frames),0), "
            "COALESCE(SUM(corrupt_frames),0) FROM processes WHERE run_id=?", (run_id,)
        ).fetchone()
    finally:
        db.close()
    ids = [s["session_id"] for s in sessions]
    return {
        "run_id": run_id, "run": run, "produced": run["produced_events"],
        "stored": per_process[0], "stored_rows": stored, "dropped": run["dropped_events"],
        "placeholders": placeholders, "sessions": sessions,
        "duplicate_sessions": len(ids) - len(set(ids)), "duplicate_frames": per_process[1],
        "corrupt_frames": per_process[2],
    }


def complete_sessions(acc: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in acc["sessions"] if s["name"] == name and s["complete"]]


def incomplete_sessions(acc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in acc["sessions"] if not s["complete"]]
