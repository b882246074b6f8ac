"""CPU time and RSS of every recorded process, sampled by the sidecar with psutil (nothing
runs in the program for this)."""

from __future__ import annotations

import time
from typing import Any, Iterable

from ..store.api import ProcessSample


class ProcessSampler:
    def __init__(self, store: Any, run_id: str, interval_s: float = 0.5) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_ns = int(interval_s * 1e9)
        self._next = 0
        self._handles: dict[int, Any] = {}
        self._gone: set[int] = set()
        try:
            import psutil

            self._psutil: Any = psutil
        except ImportError:  # psutil is a dependency; tolerate a broken install
            self._psutil = None

    def maybe_sample(self, procs: Iterable[Any]) -> int:
        """Sample every process each interval, and a newly seen one at once."""
        now = time.time_ns()
        if self._psutil is None:
            return 0
        due = now >= self._next
        if due:
            self._next = now + self.interval_ns
        rows = []
        for proc in procs:
            pid = proc.pid
            if pid in self._gone or (not due and pid in self._handles):
                continue
            try:
                h = self._handles.get(pid)
                if h is None:
                    h = self._handles[pid] = self._psutil.Process(pid)
                with h.oneshot():
                    t = h.cpu_times()
                    rows.append(ProcessSample(self.run_id, pid, now, t.user + t.system,
                                              h.memory_info().rss))
            except Exception:  # gone, zombie, or not ours any more
                self._gone.add(pid)
        if rows:
            self.store.add_samples(rows)
        return len(rows)
