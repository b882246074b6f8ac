"""Access to the store for one request, and the run-level facts every page needs.

One read-only connection per request (opened on first use, closed at teardown): the sidecar
of a live run writes the same database in WAL mode, and a short-lived reader never holds a
snapshot open across requests, so each poll sees the newest committed data.

Every id that comes from a request is only ever used as a bound SQL parameter; nothing here
builds a file path from request data (the database path comes from the app's config alone).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, current_app, g

from flowagent.reports import stats
from flowagent.model.graph import from_aggregates, to_contract
from flowagent.store import queries
from flowagent.store.api import Store, open_store, store_url


def store_location() -> str:
    """The app's store: its ``STORE`` URL, else the data directory's SQLite file."""
    return store_url(current_app.config["DATA_DIR"], current_app.config.get("STORE"))


def get_store() -> Store:
    """The request's read-only store (raises StoreError when there is no data yet)."""
    store = g.get("flowagent_store")
    if store is None:
        store = open_store(store_location(), readonly=True)
        g.flowagent_store = store
    return store


def _close_store(_exc: BaseException | None) -> None:
    store = g.pop("flowagent_store", None)
    if store is not None:
        store.close()


def is_live(run: dict[str, Any]) -> bool:
    """A run is live while its launcher has not written its end."""
    return run.get("status") == "running" and not run.get("ended_ns")


def run_or_404(run_id: str) -> dict[str, Any]:
    """The run with live totals filled in (the runs row gets its totals only at the end)."""
    store = get_store()
    run = store.run(run_id)
    if run is None:
        abort(404, description=f"no run {run_id!r} in this store")
    return with_totals(store, run)


def with_totals(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    run = dict(run)
    run["live"] = is_live(run)
    if run["live"]:
        run.update(queries.live_totals(store, run["run_id"]))
    else:
        run.setdefault("open_sessions", 0)
    return run


def session_or_404(session_id: str) -> dict[str, Any]:
    row = get_store().session(session_id)
    if row is None:
        abort(404, description=f"no session {session_id!r} in this store")
    return row


def latest_run_id() -> str | None:
    return get_store().latest_run()


# -- merged graph cache ---------------------------------------------------------------------
# Building the merged graph means reading every aggregate of the run and going through
# networkx; a finished run never changes, and a live one changes only when sessions finish,
# so the contract is cached under a key that moves with exactly those facts.

class _GraphCache:
    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.items: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> dict[str, Any] | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: tuple, value: dict[str, Any]) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def _run_version(store: Store, run: dict[str, Any]) -> tuple:
    """A key that moves whenever what the run's aggregates say may have changed."""
    run_id = run["run_id"]
    if run.get("live"):
        # Aggregates are flushed while sessions are open, so the sums of the graph itself
        # (plus the sidecar's process samples) are the only reliable version of a live run.
        v = store.aggregate_version(run_id)
        return (store.url, run_id, "live", v.nodes, v.calls, v.errors, v.samples,
                run.get("sessions"))
    return (store.url, run_id, run.get("ended_ns"), run.get("sessions"), run.get("calls"))


def _cached(kind: str, run: dict[str, Any], build: Callable[[Store], dict[str, Any]]
            ) -> dict[str, Any]:
    store = get_store()
    key = (kind, *_run_version(store, run))
    cache: _GraphCache = current_app.extensions["flowagent_viewer"]["graphs"]
    value = cache.get(key)
    if value is None:
        value = build(store)
        cache.put(key, value)
    return value


def merged_contract(run: dict[str, Any]) -> dict[str, Any]:
    """The run's merged architecture graph (export contract), cached per state of the run."""
    return _cached("graph", run,
                   lambda store: to_contract(from_aggregates(store.aggregates(run["run_id"]))))


def run_report(run: dict[str, Any]) -> dict[str, Any]:
    """:func:`flowagent.reports.stats.report` of the run, cached like the graph. Callers must not
    change it in place (it is shared between requests)."""
    return _cached("report", run, lambda store: stats.report(store, run["run_id"]))


def init_app(app: Flask) -> None:
    app.extensions.setdefault("flowagent_viewer", {})["graphs"] = _GraphCache()
    app.teardown_appcontext(_close_store)
