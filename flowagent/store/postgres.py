"""PostgreSQL store: the shared store of a fleet (``postgresql://user@host:port/db``).

Any number of sidecars, on any number of hosts, write into one database at the same time.
Each writes through its own local spool (:mod:`flowagent.store.spool`): the sidecar's writes
go into a SQLite store in its data directory and a forwarder thread upserts every change into
PostgreSQL in batches, so an unreachable or restarted server never slows the program down or
loses a session, and a change delivered twice is stored once. Readers (CLI, viewer) query the
server directly and see every run of every host.

Layout: :mod:`flowagent.store.pgschema` (the SQLite layout, keyed per run, big tables
partitioned by run). Reading reuses the SQLite store's queries through a connection that
speaks their dialect (:mod:`flowagent.store.pgconn`); only statements whose SQL differs are
written again here.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections import OrderedDict
from typing import Any, Mapping, Sequence

from ..errors import StoreError
from . import chunks as C
from . import lineage, pgschema
from .pgconn import (_SCHEMA_LOCK, PgDB, drop_partitions, ensure_schema, one_line, redact,
                     require_psycopg)
from .spool import Forwarder, describe, install_capture, spool_path, waiting
from .sqlite import SQLiteStore
from .traces import TABLES as TRACE_TABLES

# Closing a writer (end of a run) gives the server this long to take what the spool holds,
# and gives up sooner when it is not answering: the spool keeps it for the next run.
FINAL_FORWARD_S = 30.0
FINAL_ATTEMPTS = 2


class SpoolStore(SQLiteStore):
    """The writer of a ``postgresql://`` store: a local SQLite spool plus its forwarder."""

    capabilities: Mapping[str, bool] = {"shared": True}
    compact_singles = False  # the forwarder sends ``sessions`` rows as they are

    def __init__(self, url: str, data_dir: str, *, forward: bool = True) -> None:
        require_psycopg()
        super().__init__(spool_path(data_dir))
        self.url = url
        self.local_deletes = install_capture(self.db)
        self.forwarder = Forwarder(self.path, url)
        self.forward_note: str | None = None
        self.final_forward_s = FINAL_FORWARD_S
        if forward:
            self.forwarder.start()

    def shape_id(self, text: str) -> int:
        """Shapes are interned by a hash of their text: the same id in every spool and on
        the server (see :mod:`flowagent.store.spool`)."""
        sid = self._shape_ids.get(text)
        if sid is None:
            sid = pgschema.shape_id(text)
            self.db.execute("INSERT OR IGNORE INTO shapes(sid, text) VALUES(?,?)", (sid, text))
            self._shape_ids[text] = sid
            self._shape_text[sid] = text
        return sid

    def prunable_runs(self, keep: str) -> list[str]:
        # The spool holds what the server may not have yet: nothing is pruned locally
        # until every change has been forwarded.
        if waiting(self.db):
            return []
        return super().prunable_runs(keep)

    def delete_run(self, run_id: str) -> None:
        """Free the spool of a forwarded run (this data directory's size limit): the shared
        server keeps it; its own retention decides there."""
        with self.local_deletes:
            super().delete_run(run_id)

    def waiting(self) -> int:
        return waiting(self.db)

    # Fleet control is the server's: a spool would hold it back from the sidecars.
    def service_control(self, service: str) -> Any:
        return _on_server(self.url, "service_control", service)

    def service_controls(self) -> list[Any]:
        return _on_server(self.url, "service_controls")  # type: ignore[no-any-return]

    def set_service_control(self, service: str, *, paused: bool | None = None,
                            sample_rate: float | None = None,
                            include: Sequence[str] | None = None,
                            exclude: Sequence[str] | None = None) -> Any:
        return _on_server(self.url, "set_service_control", service, paused=paused,
                          sample_rate=sample_rate, include=include, exclude=exclude)

    def forward_status(self) -> str:
        return describe(self.url, self.waiting(), self.forwarder.last_error, self.path)

    def close(self) -> None:
        """Stop forwarding in the background, give the server :attr:`final_forward_s` to
        take what is still waiting (it stays in the spool otherwise), and close."""
        self.forwarder.stop()
        left = self.forwarder.drain(self.final_forward_s, FINAL_ATTEMPTS)
        #: what the run summary says about forwarding: None when everything reached the server
        self.forward_note = (describe(self.url, left, self.forwarder.last_error, self.path)
                            if left else None)
        self.forwarder.close()
        super().close()


def _on_server(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    server = PostgresStore(url)
    try:
        return getattr(server, method)(*args, **kwargs)
    finally:
        server.close()


class PostgresStore(SQLiteStore):
    """A reader (and the retention writer) of the shared PostgreSQL store."""

    capabilities: Mapping[str, bool] = {"shared": True}
    # PgDB speaks sqlite3.Connection's execute dialect (see flowagent.store.pgconn)
    db: PgDB  # type: ignore[assignment]

    def __init__(self, url: str, readonly: bool = True) -> None:
        self.url = url
        self.path = redact(url)
        self.readonly = readonly
        self.db = PgDB(url)
        pg = require_psycopg()
        try:
            with self.db.conn.transaction():
                ensure_schema(self.db.conn, readonly=readonly)
        except pg.Error as exc:
            raise StoreError(f"cannot use the PostgreSQL store {self.path}: {one_line(exc)}"
                             ) from None
        self._shape_ids: dict[str, int] = {}
        self._shape_text: dict[int, str] = {}
        self._chunks: OrderedDict[Any, Any] = OrderedDict()

    # -- statements whose SQL differs from SQLite's --------------------------------------------
    def _call_rows(self, row: Any, info: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        run_id = row["run_id"]
        ids = self.db.execute(
            "SELECT c.chunk_id, c.ids FROM session_chunks sc JOIN chunks c ON "
            "c.run_id=sc.run_id AND c.chunk_id=sc.chunk_id WHERE sc.run_id=? AND sc.sid=? "
            "ORDER BY sc.chunk_id", (run_id, row["sid"])).fetchall()
        if not ids:
            return []
        if info is None:
            info = self._process_info(row["pk"], run_id)
        chunks = [(kind, *self._run_chunk(run_id, chunk_id)) for chunk_id, kind in ids]
        return C.session_rows(chunks, C.session_number(row["session_id"]), C.ProcessMaps(info))

    def _run_chunk(self, run_id: str, chunk_id: int) -> Any:
        key = (run_id, chunk_id)
        hit = self._chunks.get(key)
        if hit is not None:
            self._chunks.move_to_end(key)
            return hit
        data = self.db.execute("SELECT data FROM chunks WHERE run_id=? AND chunk_id=?",
                               (run_id, chunk_id)).fetchone()
        hit = C.by_session(bytes(data[0])) if data else ({}, (0, 0))
        self._chunks[key] = hit
        if len(self._chunks) > 8:
            self._chunks.popitem(last=False)
        return hit

    def stored_calls(self, run_id: str | None = None) -> dict[str, int]:
        where, args = ("WHERE sc.run_id=?", (run_id,)) if run_id else ("", ())
        row = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN c.placeholders<>0 THEN 0 ELSE sc.calls END),0), "
            "COALESCE(SUM(CASE WHEN c.placeholders<>0 THEN sc.calls ELSE 0 END),0) "
            "FROM session_chunks sc JOIN chunks c ON c.run_id=sc.run_id AND "
            f"c.chunk_id=sc.chunk_id {where}", args).fetchone()
        return {"calls": int(row[0]), "placeholders": int(row[1])}

    def stored_bytes(self) -> int:
        return int(self.db.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def delete_run(self, run_id: str) -> None:
        """Forget one run: its partitions are dropped whole, its small rows deleted."""
        conn = self.db.conn
        with self.db._lock, conn.transaction():
            drop_partitions(conn, run_id)
            for table in ("functions", "processes", "graph_nodes", "graph_edges", "variants",
                          "error_clusters", "process_samples", "shape_counts", "paths",
                          "runs", *lineage.TABLES, *TRACE_TABLES):
                conn.execute(f"DELETE FROM {table} WHERE run_id=%s", (run_id,))  # noqa: S608

    def fleet(self) -> list[Any]:
        from .api import FleetEntry

        return [FleetEntry(r[0], r[1], r[2], r[3], r[4]) for r in self.db.execute(
            "SELECT service, host, COUNT(*), "
            "COUNT(*) FILTER (WHERE status='running' AND ended_ns IS NULL), MAX(started_ns) "
            "FROM runs GROUP BY service, host ORDER BY service, host")]

    def spool_backlog(self) -> list[Any]:
        from .api import SpoolBacklog

        try:
            rows = self.db.execute("SELECT host, spool, waiting, updated_ns FROM spool_backlog "
                                   "ORDER BY host, spool").fetchall()
        except Exception as exc:  # no forwarder ever reached this server
            if "does not exist" in str(exc):
                return []
            raise
        return [SpoolBacklog(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def session_totals(self, run_id: str) -> Any:
        from .api import SessionTotals

        row = self.db.execute(
            # the sessions of child processes are parts of others: not counted as sessions
            "SELECT COUNT(*) FILTER (WHERE NOT " + lineage.LINKED.format(alias="sessions.", table="sessions")
            + "), COALESCE(SUM(calls),0), COALESCE(SUM(errors),0), "
            "COUNT(*) FILTER (WHERE result IS NULL), "
            "COUNT(*) FILTER (WHERE complete=0 AND result IS NOT NULL) "
            "FROM sessions WHERE run_id=?", (run_id,)).fetchone()
        return SessionTotals(*(int(v) for v in row))

    def exception_types(self, run_id: str, limit: int = 200) -> list[Any]:
        from .api import ExceptionCount

        return [ExceptionCount(r[0], r[1], int(r[2])) for r in self.db.execute(
            "SELECT f.name AS function_name, sh.text AS exception_type, "
            "SUM((j.value->>2)::bigint) AS count "
            "FROM sessions s CROSS JOIN LATERAL jsonb_array_elements(s.raised::jsonb) j "
            "JOIN functions f ON f.run_id=s.run_id AND f.fid=(j.value->>0)::bigint "
            "JOIN shapes sh ON sh.sid=(j.value->>1)::bigint "
            "WHERE s.run_id=? AND s.errors>0 AND s.tree_kept>0 AND s.raised IS NOT NULL "
            "GROUP BY f.name, sh.text ORDER BY count DESC, f.name LIMIT ?", (run_id, limit))]

    def shape_id(self, text: str) -> int:
        raise StoreError("the PostgreSQL store is written through a sidecar's spool")

    def set_service_control(self, service: str, *, paused: bool | None = None,
                            sample_rate: float | None = None,
                            include: Sequence[str] | None = None,
                            exclude: Sequence[str] | None = None) -> Any:
        """Written straight to the server (not spooled): a fleet's sidecars poll it there.
        Under the schema lock, so concurrent first writers never race on the table."""
        from . import control

        conn = self.db.conn
        with self.db._lock, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(control.SCHEMA)
            control.write(self.db, service, control.merged(
                control.read(self.db, service), service, paused, sample_rate, include,
                exclude))
        return control.read(self.db, service)

    def close(self) -> None:
        self.db.close()


# What readers ask (the CLI, the viewer, tools): a read-through writer answers these from the
# server, once its own changes are there. The sidecar's bookkeeping (process state, open
# sessions, row ids, its run's aggregates as it resumes) always reads its own spool.
SERVER_READS = (
    "runs", "run", "latest_run", "fleet", "spool_backlog", "processes", "samples", "functions", "shape_text",
    "node_stats", "edge_stats", "variant_stats", "cluster_stats", "path_counts", "shape_counts",
    "aggregates", "aggregate_version", "sessions", "count_sessions", "count_matching",
    "session", "session_starts", "session_totals", "session_results", "variant_results",
    "session_roots", "exception_types", "function_sessions", "root_sessions", "session_graph",
    "session_calls", "iter_session_graphs", "stored_calls", "stored_bytes", "prunable_runs",
    "parent_session")


class ReadThroughStore(SpoolStore):
    """A writer that reads its own writes from the server: what a tool that writes and then
    asks (an importer, the store's test suite) expects. Each read first forwards the spool
    synchronously; inside an open transaction reads stay local (the transaction's rows are
    not committed, so not forwardable yet)."""

    def __init__(self, url: str, data_dir: str) -> None:
        super().__init__(url, data_dir, forward=False)
        self.server = PostgresStore(url)

    def _synced(self) -> bool:
        if self.db.in_transaction:
            return False
        left = self.forwarder.drain(FINAL_FORWARD_S, FINAL_ATTEMPTS)
        if left:
            raise StoreError(f"the PostgreSQL store {redact(self.url)} did not take "
                             f"{left} changes ({self.forwarder.last_error}); they stay in "
                             f"{self.path} and are forwarded by the next writer")
        return True

    def delete_run(self, run_id: str) -> None:
        """Delete the run on the server (its partitions dropped) and from the spool."""
        self._synced()
        self.server.delete_run(run_id)
        super().delete_run(run_id)

    def close(self) -> None:
        super().close()
        self.server.close()


def _read_through(name: str) -> Any:
    local = getattr(SQLiteStore, name)

    def method(self: ReadThroughStore, *args: Any, **kwargs: Any) -> Any:
        if self._synced():
            return getattr(self.server, name)(*args, **kwargs)
        return local(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = local.__doc__
    method.__signature__ = inspect.signature(local)  # type: ignore[attr-defined]
    return method


for _name in SERVER_READS:
    if hasattr(SQLiteStore, _name):
        setattr(ReadThroughStore, _name, _read_through(_name))


def default_spool_dir(url: str) -> str:
    """Where a writer spools when its caller names no data directory: FLOWAGENT_SPOOL_DIR,
    else one directory per server URL under the user's state directory."""
    explicit = os.environ.get("FLOWAGENT_SPOOL_DIR")
    if explicit:
        return explicit
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                             "state")
    digest = hashlib.sha256(redact(url).encode()).hexdigest()[:16]
    return os.path.join(state, "flowagent", f"spool-{digest}")


def open_store(url: str, readonly: bool = False, spool_dir: str | None = None
               ) -> PostgresStore | SpoolStore:
    """A reader of the server; a recording writer (a run's sidecar and launcher) spooling in
    ``spool_dir``, its data directory, and forwarding in the background; or, without a data
    directory, a writer that reads its own writes back from the server."""
    if readonly:
        return PostgresStore(url)
    if spool_dir is not None:
        return SpoolStore(url, spool_dir)
    return ReadThroughStore(url, default_spool_dir(url))


__all__ = ["PostgresStore", "ReadThroughStore", "SpoolStore", "default_spool_dir",
           "open_store"]
