"""W3C trace links at rest: which recorded request joined which trace under which caller span,
and which span id each outgoing HTTP call sent.

Two small tables, written by the sidecar from the batches' ``traces`` entries
(:mod:`flowagent.agent.tracecontext`) and read by :mod:`flowagent.reports.stitch`:

* ``trace_sessions``: a session whose request arrived with a ``traceparent`` (its trace id and
  the caller's span id);
* ``trace_spans``: an outgoing call (session and call id) and the span id it sent.

A reader joins the two on the span id, across runs and across stores. Stores written before
these tables existed read as having no links.
"""

from __future__ import annotations

import sqlite3

from ..protocol.rundir import session_id as make_session_id

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS trace_sessions(
  session_id TEXT PRIMARY KEY, run_id TEXT, trace_id TEXT, parent_span TEXT, call_id INTEGER);
CREATE INDEX IF NOT EXISTS trace_sessions_run ON trace_sessions(run_id);
CREATE INDEX IF NOT EXISTS trace_sessions_trace ON trace_sessions(trace_id);
CREATE TABLE IF NOT EXISTS trace_spans(
  span_id TEXT, run_id TEXT, session_id TEXT, call_id INTEGER, trace_id TEXT,
  PRIMARY KEY(span_id, session_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_spans_run ON trace_spans(run_id);
CREATE INDEX IF NOT EXISTS trace_spans_trace ON trace_spans(trace_id);
"""
TABLES = ("trace_sessions", "trace_spans")

JOINED, SENT = 0, 1  # entry kinds (flowagent.agent.tracecontext)


def add_entries(store: Any, run_id: str, pk: str, entries: list[Any]) -> None:
    """Store a batch's ``traces`` entries (``[session, kind, trace, span, call]``) of the
    process ``pk`` (inside the caller's transaction)."""
    db = store.db
    joined, sent = [], []
    for ses, kind, trace, span, cid in entries:
        session_id = make_session_id(pk, ses)
        if kind == JOINED:
            joined.append((session_id, run_id, trace, span, cid))
        elif kind == SENT:
            sent.append((span, run_id, session_id, cid, trace))
    if joined:
        db.executemany("INSERT OR IGNORE INTO trace_sessions VALUES(?,?,?,?,?)", joined)
    if sent:
        db.executemany("INSERT OR IGNORE INTO trace_spans VALUES(?,?,?,?,?)", sent)


def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        cur = db.execute(sql, args)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # a store from before trace links
        raise
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def run_links(store: Any, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(joined sessions, sent spans)`` of one run: ``{session_id, trace_id, parent_span,
    call_id}`` and ``{span_id, session_id, call_id, trace_id}``."""
    joined = _rows(store.db, "SELECT session_id, trace_id, parent_span, call_id "
                             "FROM trace_sessions WHERE run_id=?", (run_id,))
    sent = _rows(store.db, "SELECT span_id, session_id, call_id, trace_id FROM trace_spans "
                           "WHERE run_id=?", (run_id,))
    return joined, sent


def trace_links(store: Any, trace_ids: list[str], run_ids: list[str]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Like :func:`run_links`, for the sessions of the given traces in the given runs only
    (what one distributed session needs), each row with its ``run_id``."""
    if not trace_ids or not run_ids:
        return [], []
    t = ",".join("?" * len(trace_ids))
    r = ",".join("?" * len(run_ids))
    joined = _rows(store.db, "SELECT session_id, run_id, trace_id, parent_span, call_id FROM "
                             f"trace_sessions WHERE trace_id IN ({t}) AND run_id IN ({r})",
                   (*trace_ids, *run_ids))
    sent = _rows(store.db, "SELECT span_id, run_id, session_id, call_id, trace_id FROM "
                           f"trace_spans WHERE trace_id IN ({t}) AND run_id IN ({r})",
                 (*trace_ids, *run_ids))
    return joined, sent


def session_traces(store: Any, session_id: str) -> list[str]:
    """The trace ids a session joined or sent calls in."""
    rows = _rows(store.db, "SELECT trace_id FROM trace_sessions WHERE session_id=? UNION "
                           "SELECT trace_id FROM trace_spans WHERE session_id=?",
                 (session_id, session_id))
    return [r["trace_id"] for r in rows]


def trace_runs(store: Any, trace_ids: list[str], limit: int = 16) -> list[str]:
    """Runs of the store that recorded part of any of these traces (at most ``limit``)."""
    if not trace_ids:
        return []
    t = ",".join("?" * len(trace_ids))
    rows = _rows(store.db, f"SELECT run_id FROM trace_sessions WHERE trace_id IN ({t}) UNION "
                           f"SELECT run_id FROM trace_spans WHERE trace_id IN ({t}) LIMIT ?",
                 (*trace_ids, *trace_ids, limit))
    return [r["run_id"] for r in rows]
