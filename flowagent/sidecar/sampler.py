"""CPU time and RSS of every recorded process, sampled by the sidecar (nothing runs in the
program for this): read from ``/proc`` where there is one, as psutil reads them there, and
through psutil elsewhere. Importing psutil costs the sidecar tens of milliseconds at start,
on the way of every short run."""

from __future__ import annotations

import os
import time

from ..store.api import ProcessSample

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Iterable


class _ProcStat:
    """One process's CPU time and RSS from ``/proc/PID/stat`` and ``statm`` (what psutil's
    ``cpu_times()`` user + system and ``memory_info().rss`` are on Linux)."""

    TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._started = self._stat()[19]  # a recycled pid is another process

    def _stat(self) -> list[bytes]:
        with open(f"/proc/{self.pid}/stat", "rb") as f:
            # after the command name, which may hold spaces and parentheses
            return f.read().rpartition(b")")[2].split()

    def sample(self) -> tuple[float, int]:
        fields = self._stat()
        if fields[19] != self._started:
            raise ProcessLookupError(self.pid)
        with open(f"/proc/{self.pid}/statm", "rb") as f:
            rss_pages = int(f.read().split()[1])
        # user + system, each in seconds first, as psutil adds them
        return (int(fields[11]) / self.TICKS + int(fields[12]) / self.TICKS,
                rss_pages * self.PAGE)


class _PsutilStat:
    def __init__(self, pid: int) -> None:
        import psutil

        self._h = psutil.Process(pid)

    def sample(self) -> tuple[float, int]:
        with self._h.oneshot():
            t = self._h.cpu_times()
            return t.user + t.system, self._h.memory_info().rss


def _handle_type() -> type | None:
    if os.path.exists(f"/proc/{os.getpid()}/statm"):
        return _ProcStat
    try:
        import psutil  # noqa: F401
    except ImportError:  # psutil is a dependency; tolerate a broken install
        return None
    return _PsutilStat


class ProcessSampler:
    def __init__(self, store: Any, run_id: str, interval_s: float = 0.5) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_ns = int(interval_s * 1e9)
        self._next = 0
        self._handles: dict[int, Any] = {}
        self._gone: set[int] = set()
        self._handle = _handle_type()

    def maybe_sample(self, procs: Iterable[Any]) -> int:
        """Sample every process each interval, and a newly seen one at once."""
        now = time.time_ns()
        if self._handle is None:
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
                    h = self._handles[pid] = self._handle(pid)
                cpu, rss = h.sample()
                rows.append(ProcessSample(self.run_id, pid, now, cpu, rss))
            except Exception:  # gone, zombie, or not ours any more
                self._gone.add(pid)
        if rows:
            self.store.add_samples(rows)
        return len(rows)
