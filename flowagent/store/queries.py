"""Read-only queries the viewer needs on top of :class:`~flowagent.store.sqlite.SQLiteStore`.

Each function takes a store and answers one question with one bounded query, so a page stays
fast on a run with 100 000 sessions: counts are capped (a pager needs "more than N", not the
exact figure of a filter that matches everything), and per-call scans are limited to the
sessions that can contribute (for example, exception types only look at sessions with errors).
Nothing here writes.
"""

from __future__ import annotations

from typing import Any

from .sqlite import RESULTS, SQLiteStore, session_where

ERROR = RESULTS.index("error")


def count_sessions(store: SQLiteStore, run_id: str | None, *, result: str | None = None,
                   root: str | None = None, min_duration_ns: int | None = None,
                   cap: int = 10_000) -> tuple[int, bool]:
    """How many sessions match, counted up to ``cap``: ``(count, capped)``.

    The function-name search of ``SQLiteStore.sessions`` is not supported here: it scans every
    call of the run, which a pager cannot afford on each page; callers page with "has more".
    """
    where, args = session_where(run_id, result, root, min_duration_ns)
    n = store.db.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE {where} LIMIT ?)",
                         (*args, cap + 1)).fetchone()[0]
    return (min(n, cap), n > cap)


def session_roots(store: SQLiteStore, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Root functions and request routes of a run's sessions, most frequent first.

    Read from the merged graph's per-function ``roots`` counts (finished sessions), not by
    grouping the sessions table: one small indexed read instead of a scan of every session.
    """
    rows = store.db.execute(
        "SELECT f.name AS name, g.roots AS sessions FROM graph_nodes g "
        "JOIN functions f ON f.run_id=g.run_id AND f.fid=g.fid "
        "WHERE g.run_id=? AND g.roots>0 ORDER BY g.roots DESC, f.name LIMIT ?",
        (run_id, limit)).fetchall()
    return [dict(r) for r in rows]


def live_totals(store: SQLiteStore, run_id: str) -> dict[str, int]:
    """Totals of a run computed from its sessions, for a run still being recorded.

    The ``runs`` row only gets its totals when the run ends; while it is going, the sessions
    table is the truth. ``open`` counts sessions that started but have not finished yet.
    """
    row = store.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(calls),0), COALESCE(SUM(errors),0), "
        "COALESCE(SUM(result IS NULL),0), COALESCE(SUM(complete=0 AND result IS NOT NULL),0) "
        "FROM sessions WHERE run_id=?", (run_id,)).fetchone()
    return {"sessions": row[0], "calls": row[1], "errors": row[2], "open_sessions": row[3],
            "incomplete_sessions": row[4]}


def exception_types(store: SQLiteStore, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Which exception types each function raised, over the kept session trees of a run.

    Read from each failed session's ``raised`` summary (``[[fid, exception shape id, calls],
    ...]``, written when the session ended), so no call record is decoded.
    """
    rows = store.db.execute(
        "SELECT f.name AS function_name, sh.text AS exception_type, "
        "SUM(json_extract(j.value, '$[2]')) AS count "
        "FROM sessions s, json_each(s.raised) j "
        "JOIN functions f ON f.run_id=s.run_id AND f.fid=json_extract(j.value, '$[0]') "
        "JOIN shapes sh ON sh.sid=json_extract(j.value, '$[1]') "
        "WHERE s.run_id=? AND s.errors>0 AND s.tree_kept>0 AND s.raised IS NOT NULL "
        "GROUP BY f.name, sh.text ORDER BY count DESC, f.name LIMIT ?",
        (run_id, limit)).fetchall()
    return [dict(r) for r in rows]


def function_sessions(store: SQLiteStore, run_id: str, function_name: str,
                      limit: int = 20) -> list[dict[str, Any]]:
    """Recent kept sessions whose tree contains a call of ``function_name`` (newest first).

    Walks sessions newest first and stops at ``limit`` matches (each session row lists its
    functions), so a frequent function answers at once.
    """
    fid = store.db.execute("SELECT fid FROM functions WHERE run_id=? AND name=?",
                           (run_id, function_name)).fetchone()
    if fid is None:
        return []
    rows = store.db.execute(
        "SELECT s.* FROM sessions s WHERE s.run_id=? AND s.tree_kept>0 AND "
        "instr(s.fids, ' ' || ? || ' ') > 0 ORDER BY s.started_ns DESC LIMIT ?",
        (run_id, fid[0], limit)).fetchall()
    return [store.session_dict(r) for r in rows]


__all__ = ["count_sessions", "session_roots", "live_totals", "exception_types",
           "function_sessions"]
