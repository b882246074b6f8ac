"""Sessions of child processes at rest: which session hangs under which call of another.

A child process (or pool task) started from inside a recorded call stores its work as
sessions of its own process, each linked here to the parent call (``session_links``, written
by the sidecar from the batches' ``links`` entries, :mod:`flowagent.agent.lineage`). Readers
see one session: the parent's graph holds each linked session's tree as a subtree under the
parent call (:func:`graft`), with the child's own process id on its calls (a lane of its
own), and a linked session is not listed on its own while its parent session exists
(:data:`LINKED`).

Stores written before this table existed read as having no links.
"""

from __future__ import annotations

import sqlite3

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Callable

SCHEMA = """
CREATE TABLE IF NOT EXISTS session_links(
  session_id TEXT PRIMARY KEY, run_id TEXT, parent_session TEXT, parent_call INTEGER,
  parent_function TEXT, parent_pid INTEGER);
CREATE INDEX IF NOT EXISTS session_links_parent ON session_links(parent_session);
CREATE INDEX IF NOT EXISTS session_links_run ON session_links(run_id);
"""
TABLES = ("session_links",)

# SQL condition: the session ``{alias}session_id`` hangs under a session that is stored.
# Linked sessions, parents and children, are rows of the ``sessions`` table itself, never
# one-call sessions of the compact form (the SQLite store keeps them there): ``{table}``
# names that table (``main.sessions`` where a view of both forms shadows it).
LINKED = ("EXISTS (SELECT 1 FROM session_links l JOIN {table} p ON "
          "p.session_id=l.parent_session WHERE l.session_id={alias}session_id)")

MAX_DEPTH = 32  # children of children...: a cycle (a corrupt store) must still end


def add(db: sqlite3.Connection, run_id: str, session_id: str, parent_session: str,
        parent_call: int, parent_function: str, parent_pid: int) -> None:
    db.execute("INSERT OR IGNORE INTO session_links VALUES(?,?,?,?,?,?)",
               (session_id, run_id, parent_session, parent_call, parent_function, parent_pid))


def children(db: sqlite3.Connection, session_id: str, table: str = "sessions"
             ) -> list[tuple[str, int]]:
    """(session id, parent call id) of the sessions linked under ``session_id``'s calls."""
    try:
        rows = db.execute("SELECT l.session_id, l.parent_call FROM session_links l JOIN "
                          f"{table} s ON s.session_id=l.session_id WHERE l.parent_session=? "
                          "ORDER BY s.started_ns, s.sid", (session_id,)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # a store from before session links
        raise
    return [(r[0], r[1]) for r in rows]


def parent_of(db: sqlite3.Connection, session_id: str, table: str = "sessions") -> str | None:
    """The session ``session_id`` hangs under, if it is stored."""
    try:
        row = db.execute(f"SELECT l.parent_session FROM session_links l JOIN {table} p ON "
                         "p.session_id=l.parent_session WHERE l.session_id=?",
                         (session_id,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def graft(graph: dict[str, Any], db: sqlite3.Connection,
          own_graph: Callable[[str], dict[str, Any] | None], depth: int = 0,
          table: str = "sessions") -> dict[str, Any]:
    """``graph`` with the trees of the sessions linked under its calls added (recursively):
    each child's root becomes a child of the parent call (of the parent's root when that
    call is not in the stored tree), and the child's call ids are moved past the ids
    already used, so every node id stays unique within the session."""
    if depth >= MAX_DEPTH:
        return graph
    nodes, edges = graph["nodes"], graph["edges"]
    grafted = False
    for child_id, parent_call in children(db, graph["session_id"], table):
        child = own_graph(child_id)
        if child is None or not child["nodes"]:
            continue
        child = graft(child, db, own_graph, depth + 1, table)
        ids = {n["id"] for n in nodes}
        if not ids:
            break
        attach = parent_call if parent_call in ids else nodes[0]["id"]
        callers = {n["id"]: n["function_name"] for n in nodes}
        offset = max(ids)
        for n in child["nodes"]:
            top = n["parent_id"] is None
            n["id"] += offset
            if top:
                n["parent_id"] = attach
                n["caller"] = callers.get(attach)
                edges.append({"from": attach, "to": n["id"], "branch": n["result_type"]})
            else:
                n["parent_id"] += offset
            nodes.append(n)
        for e in child["edges"]:
            edges.append({**e, "from": e["from"] + offset, "to": e["to"] + offset})
        grafted = True
    if grafted:
        root = nodes[0]
        rest = sorted(nodes[1:], key=lambda n: n["timestamp_start"])
        graph["nodes"] = [root, *rest]
    return graph


def readable(db: sqlite3.Connection) -> None:
    """A store opened read-only that was written before session links: an empty table of
    the connection's own, so every reader's SQL holds (a real table is never shadowed)."""
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                     "name='session_links'").fetchone()
    if row is None:
        db.executescript(SCHEMA.replace("CREATE TABLE IF NOT EXISTS ",
                                        "CREATE TEMP TABLE IF NOT EXISTS ")
                         .replace("CREATE INDEX IF NOT EXISTS ", "CREATE INDEX IF NOT EXISTS temp."))


def with_descendants(db: sqlite3.Connection, sessions: list[dict[str, Any]],
                     table: str = "sessions") -> list[dict[str, Any]]:
    """Session rows whose ``calls`` and ``errors`` include those of the sessions linked
    under them (at any depth): what the one session did, in all its processes."""
    ids = {s["session_id"]: s for s in sessions}
    frontier = {sid: sid for sid in ids}  # session -> the listed session it counts for
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        found: dict[str, str] = {}
        keys = list(frontier)
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            try:
                rows = db.execute(
                    "SELECT l.parent_session, s.session_id, s.calls, s.errors FROM "
                    f"session_links l JOIN {table} s ON s.session_id=l.session_id WHERE "
                    f"l.parent_session IN ({','.join('?' * len(part))})", part).fetchall()
            except sqlite3.OperationalError:
                return sessions
            for parent, child, calls, errors in rows:
                top = ids[frontier[parent]]
                top["calls"] = (top.get("calls") or 0) + (calls or 0)
                top["errors"] = (top.get("errors") or 0) + (errors or 0)
                found[child] = frontier[parent]
        frontier = found
    return sessions
