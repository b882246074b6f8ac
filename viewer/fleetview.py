"""The fleet page's model: services → hosts → runs, with what is live and what still waits.

A shared store (PostgreSQL) holds the runs of every host; a SQLite store holds one machine's.
The page shows both the same way: per service and host, its runs (newest first), how many are
being recorded and how many of their sessions are open right now, and what each host's spool
still held for the server when it last reached it (:meth:`Store.spool_backlog`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowagent.store.api import Store

from .data import with_totals

RUNS_PER_HOST = 10
NO_NAME = ""  # runs stored without a service or host name


@dataclass
class HostView:
    host: str
    runs: int
    live_runs: int
    last_started_ns: int
    open_sessions: int = 0
    spool_waiting: int | None = None  # None: no spool reported (written directly)
    spool_updated_ns: int | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ServiceView:
    service: str
    hosts: list[HostView] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return sum(h.runs for h in self.hosts)

    @property
    def live_runs(self) -> int:
        return sum(h.live_runs for h in self.hosts)

    @property
    def open_sessions(self) -> int:
        return sum(h.open_sessions for h in self.hosts)


def fleet(store: Store, service: str | None = None, host: str | None = None
          ) -> list[ServiceView]:
    """The store's services, each with its hosts and their most recent runs; ``service`` /
    ``host`` narrow it to one (an empty name selects runs stored without one)."""
    backlog: dict[str, tuple[int, int]] = {}
    for b in store.spool_backlog():
        name = b.host or NO_NAME
        waiting, updated = backlog.get(name, (0, 0))
        backlog[name] = (waiting + b.waiting, max(updated, b.updated_ns))
    services: dict[str, ServiceView] = {}
    for e in store.fleet():
        s_name, h_name = e.service or NO_NAME, e.host or NO_NAME
        if (service is not None and s_name != service) or (host is not None and h_name != host):
            continue
        view = HostView(h_name, e.runs, e.live_runs, e.last_started_ns)
        if h_name in backlog:
            view.spool_waiting, view.spool_updated_ns = backlog[h_name]
        # runs(None) does not filter: runs stored without a name are picked out here
        exact = e.service is not None and e.host is not None
        rows = store.runs(service=e.service, host=e.host, limit=RUNS_PER_HOST if exact else None)
        rows = [r for r in rows if (r.get("service") or NO_NAME) == s_name
                and (r.get("host") or NO_NAME) == h_name][:RUNS_PER_HOST]
        for run in rows:
            run = with_totals(store, run)
            view.recent.append(run)
            if run["live"]:
                view.open_sessions += int(run.get("open_sessions") or 0)
        services.setdefault(s_name, ServiceView(s_name)).hosts.append(view)
    return list(services.values())


def names(store: Store) -> tuple[list[str], list[str]]:
    """Every service and every host name the store's runs carry (for filter menus)."""
    entries = store.fleet()
    return (sorted({e.service for e in entries if e.service}),
            sorted({e.host for e in entries if e.host}))
