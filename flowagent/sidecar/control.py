"""Live control of a running recording: pause/resume and the session sampling rate.

``flowagent control`` writes ``<run dir>/control.json``; the sidecar notices the change and
writes it into every ring's header (and into each new ring as it appears); each recorded
process reads its ring header at every flush, so a change takes effect within one flush
interval, without restarting anything.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from ..protocol.rundir import CONTROL_FILE as FILE


def read(run_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(run_dir, FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write(run_dir: str, paused: bool | None = None, sample_rate: float | None = None) -> dict:
    """Merge the given settings into the run's control file (atomically) and return it."""
    state = read(run_dir)
    if paused is not None:
        state["paused"] = bool(paused)
    if sample_rate is not None:
        state["sample_rate"] = float(sample_rate)
    tmp = os.path.join(run_dir, f".{FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, os.path.join(run_dir, FILE))
    return state


class Control:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self._mtime: float | None = None
        self._state: dict[str, Any] = {}
        self._applied: set[str] = set()

    def apply(self, procs: Iterable[Any]) -> None:
        try:
            mtime = os.stat(os.path.join(self.run_dir, FILE)).st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            self._state = read(self.run_dir)
            self._applied.clear()
        if not self._state:
            return
        paused = bool(self._state.get("paused", False))
        ppm = int(round(float(self._state.get("sample_rate", 1.0)) * 1_000_000))
        for proc in procs:
            if proc.pk not in self._applied:
                proc.reader.set_control(paused, ppm)
                self._applied.add(proc.pk)
