"""Live control of a running recording: pause/resume, the session sampling rate, and module
globs recorded or skipped in addition to the run's own (for modules imported from then on).

``flowagent control`` writes ``<run dir>/control.json``; the sidecar notices the change and
writes it into every ring's header (and into each new ring as it appears); each recorded
process reads its ring header at every flush, so a change takes effect within one flush
interval, without restarting anything. The header holds pause and rate; its generation
tells the process to read the file again for the module globs.

A fleet is controlled per service through the store (:mod:`flowagent.store.control`): each
sidecar of a service polls the service's row (:class:`FleetPoller`, every
:data:`FLEET_POLL_S`) and writes what changed into its run's control file, the path above.
"""

from __future__ import annotations

import os
import threading
import time

from ..protocol import jsonline
from ..protocol.control import apply_change
from ..protocol.rundir import CONTROL_FILE as FILE

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Sequence


def read(run_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(run_dir, FILE)) as f:
            data = jsonline.loads(f.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write(run_dir: str, paused: bool | None = None, sample_rate: float | None = None,
          include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
          **extra: Any) -> dict[str, Any]:
    """Merge the given settings into the run's control file (atomically) and return it."""
    state = apply_change(read(run_dir), paused, sample_rate, include, exclude)
    state.update(extra)
    tmp = os.path.join(run_dir, f".{FILE}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(jsonline.dumps(state))
    os.replace(tmp, os.path.join(run_dir, FILE))
    return state


FLEET_POLL_S = 1.0


class FleetPoller:
    """Follows a service's row in the store: one read a second, from a thread of the
    sidecar (a server) or from its loop (SQLite, :meth:`poll_due`); when its generation
    moves, the settings go into the run's control file. A store
    that does not answer (a restarting server) is asked again at the next poll; the run
    keeps its last settings meanwhile."""

    def __init__(self, run_dir: str, service: str,
                 open_reader: Callable[[], Any], interval_s: float = FLEET_POLL_S) -> None:
        self.run_dir = run_dir
        self.service = service
        self.open_reader = open_reader
        self.interval_s = interval_s
        self.generation = int(read(run_dir).get("fleet_generation", 0))
        self.errors = 0
        self._due = 0.0  # when poll_due polls next (time.monotonic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowagent-fleet-control",
                                        daemon=True)

    def start(self) -> "FleetPoller":
        self._thread.start()
        return self

    def poll_due(self, store: Any, now: float) -> None:
        """Poll through ``store`` (the sidecar's own, from its loop) if a poll is due: the
        first at once, then every :attr:`interval_s`. For a SQLite store, where a read needs
        no connection of its own: no thread, no second store opened as the run starts (the
        end of a short run would wait for it). A failed read counts and is tried again."""
        if now < self._due:
            return
        self._due = now + self.interval_s
        try:
            self.poll(store)
        except Exception:
            self.errors += 1

    def poll(self, store: Any) -> bool:
        """Apply the service's row if it changed; True when the control file was written."""
        row = store.service_control(self.service)
        if row is None or row.generation == self.generation:
            return False
        state = row.state()
        write(self.run_dir, paused=state.get("paused"), sample_rate=state.get("sample_rate"),
              include=state["include"], exclude=state["exclude"],
              fleet_generation=row.generation)
        self.generation = row.generation
        return True

    def _loop(self) -> None:
        store = None
        while not self._stop.is_set():
            try:
                if store is None:
                    store = self.open_reader()
                self.poll(store)
            except Exception:
                self.errors += 1  # the server is away: try again (with a new connection)
                if store is not None:
                    try:
                        store.close()
                    except Exception:
                        pass
                store = None
            self._stop.wait(self.interval_s)
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started (polled from its own thread)
            self._thread.join(timeout=5.0)


class Control:
    def __init__(self, run_dir: str, db: str | None = None, service: str | None = None) -> None:
        self.run_dir = run_dir
        self._mtime: float | None = None
        self._state: dict[str, Any] = {}
        self._applied: set[str] = set()
        self.fleet: FleetPoller | None = None
        self._threaded = False
        if db and service:
            from ..store.api import kind_of, open_store

            self.fleet = FleetPoller(run_dir, service, lambda: open_store(db, readonly=True))
            # A server is read through a connection of the poller's own, from its thread:
            # a server that does not answer must not hold the sidecar's loop. A SQLite store
            # is read through the sidecar's own store, from its loop (poll_fleet).
            self._threaded = kind_of(db) == "postgresql"
            if self._threaded:
                self.fleet.start()

    def poll_fleet(self, store: Any) -> None:
        """The fleet's poll through the sidecar's own store, when it is due (SQLite)."""
        if self.fleet is not None and not self._threaded:
            self.fleet.poll_due(store, time.monotonic())

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()

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


def control_service(url: str, service: str, *, paused: bool | None = None,
                    sample_rate: float | None = None, include: Sequence[str] | None = None,
                    exclude: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """Change a service's live settings in the store at ``url``; returns the new settings
    (:class:`~flowagent.store.control.ServiceControl`) and the service's runs still being
    recorded, which take them within :data:`FLEET_POLL_S` and a flush interval."""
    from ..store.api import kind_of, open_store

    # A server is written directly (never through a spool); SQLite needs a writer.
    store = open_store(url, readonly=kind_of(url) == "postgresql")
    try:
        row = store.set_service_control(service, paused=paused, sample_rate=sample_rate,
                                        include=include, exclude=exclude)
        live = [r["run_id"] for r in store.runs(service=service)
                if r.get("status") == "running" and not r.get("ended_ns")]
    finally:
        store.close()
    return row, live
