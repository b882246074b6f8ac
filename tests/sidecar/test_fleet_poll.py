"""A SQLite store's fleet control reaches a running sidecar: the service's settings, as they
are when the run starts and as they change while it runs, go into the run's control file.
The sidecar reads the service's row through its own store, from its loop (no thread, no
second store opened as the run starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flowagent.store.api import open_store

from helpers import _clean_env, wait_until


def _set(db: Path, **settings: object) -> int:
    store = open_store(str(db))
    try:
        return int(store.set_service_control("svc", **settings).generation)  # type: ignore[arg-type]
    finally:
        store.close()


def _control_file_reaches(run: Path, generation: int, proc: subprocess.Popen[bytes]
                          ) -> dict[str, object]:
    """The run's control file once it holds the fleet's ``generation`` (the sidecar polls
    the fleet row once a second)."""
    def state() -> dict[str, object] | None:
        try:
            got = json.loads((run / "control.json").read_text())
        except (OSError, ValueError):
            return None
        return got if got.get("fleet_generation") == generation else None

    return wait_until(state, f"the fleet's generation {generation} in the run", proc=proc)


def test_a_sqlite_stores_fleet_settings_reach_the_running_sidecar(tmp_path: Path) -> None:
    db = tmp_path / "flowagent.db"
    run = tmp_path / "run"
    (run / "rings").mkdir(parents=True)
    first = _set(db, paused=True, sample_rate=0.25, include=["app.*"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowagent.sidecar", "--run-dir", str(run), "--db", str(db),
         "--run-id", "r1", "--service", "svc", "--poll-ms", "20"],
        cwd=tmp_path, env=_clean_env({"FLOWAGENT_ENABLED": "0"}), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith(b"READY ")
        state = _control_file_reaches(run, first, proc)
        assert (state["paused"], state["sample_rate"], state["include"]) == (
            True, 0.25, ["app.*"])
        if Path(f"/proc/{proc.pid}/fd").is_dir():  # one connection to the store: its own
            opened = [fd for fd in Path(f"/proc/{proc.pid}/fd").iterdir()
                      if os.path.realpath(fd) == os.path.realpath(db)]
            assert len(opened) == 1, opened
        # Changed while the run goes on (as `flowagent control --service svc` does).
        second = _set(db, paused=False, exclude=["noisy.*"])
        assert second > first
        state = _control_file_reaches(run, second, proc)
        assert (state["paused"], state["include"], state["exclude"]) == (
            False, ["app.*"], ["noisy.*"])
        out, err = proc.communicate(timeout=60)  # stdin closed: the run has ended
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["sessions"] == 0
    reader = open_store(str(db), readonly=True)
    try:
        row = next(r for r in reader.runs() if r["run_id"] == "r1")
        assert row["service"] == "svc"
    finally:
        reader.close()
