"""Store and forward: a sidecar records into a local SQLite spool and forwards to PostgreSQL.

Why a spool rather than writing to the server directly: the sidecar must never wait on, or
lose data because of, a remote database. Every write of a ``postgresql://`` store goes into
a local SQLite store (``pg-spool.db`` in the data directory; the same layout and the same
code as the embedded store, so resuming a run, reloading open sessions and retention work
unchanged), and a forwarder thread copies each change to the server in batches. When the
server is unreachable at start or goes away in the middle of a run, changes wait in the
spool and go out when it is back; the program never notices.

Change capture: triggers on the spool's tables append one line per inserted, updated or
deleted row to ``spool_log`` (in the writer's own transaction, so a change is never missed).
The forwarder reads a batch of lines in order, looks each changed row up *as it is now*,
upserts it by its key in one PostgreSQL transaction (or deletes it), and only after that
commits removes the lines from the log. A crash between the two forwards the batch again;
upserts make that harmless (a row delivered twice is stored once). Rows are sent as they
are now, so forwarding in log order converges to the spool's state even when a row changed
several times.

Shape ids are hashes of the shape's text (:func:`flowagent.store.pgschema.shape_id`) in the
spool, so they are the same in every host's spool and on the server, and nothing that
refers to them (chunks, aggregates, process maps) is ever rewritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, cast

from . import pgschema
from .pgconn import (_SCHEMA_LOCK, CONNECT_TIMEOUT_S, ensure_columns, ensure_partitions, ensure_schema,
                     one_line, redact, require_psycopg)

SPOOL_FILE = "pg-spool.db"
BATCH = 2000           # log lines per forwarded transaction

# Each forwarder reports its backlog to the server with every batch, so a fleet view can say
# what each host still holds (as of when it last reached the server).
BACKLOG_SCHEMA = ("CREATE TABLE IF NOT EXISTS spool_backlog(spool TEXT PRIMARY KEY, "
                  "host TEXT, waiting BIGINT, updated_ns BIGINT)")
IDLE_S = 0.2           # forwarder's pause when the spool is empty
RETRY_S = (0.5, 5.0)   # back-off while the server is unreachable: first, longest

# Tables without a rowid: their log lines carry the whole row (they are never updated).
_NO_ROWID = {"session_chunks": ("sid", "chunk_id", "calls"),
             "trace_spans": ("span_id", "session_id", "call_id", "trace_id")}
# Their run: a column of the row, or (session_chunks) its session's.
_RUN_OF = {"session_chunks": "(SELECT run_id FROM sessions WHERE sid={row}.sid)"}


def spool_path(data_dir: str) -> str:
    return os.path.join(data_dir, SPOOL_FILE)


# Deletes made while this SQL function answers 1 (on the connection that registered it) are
# not logged: the data directory's own size limit frees the spool without deleting from the
# shared server. Every connection that writes the spool registers it (install_capture).
LOCAL_ONLY = "flowagent_spool_local"


class LocalDeletes:
    """``with local_deletes:`` deletes on this connection stay in the spool."""

    def __init__(self) -> None:
        self.active = 0

    def __call__(self) -> int:
        return 1 if self.active else 0

    def __enter__(self) -> None:
        self.active += 1

    def __exit__(self, *exc: object) -> None:
        self.active -= 1


def install_capture(db: sqlite3.Connection) -> LocalDeletes:
    """The change log and its triggers on every forwarded table (idempotent); returns the
    switch that keeps this connection's deletes local."""
    local = LocalDeletes()
    db.create_function(LOCAL_ONLY, 0, local)
    db.execute("CREATE TABLE IF NOT EXISTS spool_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
               "tbl TEXT NOT NULL, op TEXT NOT NULL, rid INTEGER, key TEXT)")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, keys in pgschema.KEYS.items():
        if table not in tables:
            continue
        if table in _NO_ROWID:
            cols = _NO_ROWID[table]
            run_of = _RUN_OF.get(table, "{row}.run_id")
            row = ", ".join(f"NEW.{c}" for c in cols)
            db.execute(
                f"CREATE TRIGGER IF NOT EXISTS spool_{table}_i AFTER INSERT ON {table} BEGIN "
                f"INSERT INTO spool_log(tbl, op, key) VALUES('{table}', 'i', "
                f"json_array({run_of.format(row='NEW')}, {row})); END")
            old = ", ".join(f"OLD.{c}" for c in cols[:2])
            db.execute(
                f"CREATE TRIGGER IF NOT EXISTS spool_{table}_d AFTER DELETE ON {table} "
                f"WHEN {LOCAL_ONLY}() = 0 BEGIN "
                f"INSERT INTO spool_log(tbl, op, key) VALUES('{table}', 'd', "
                f"json_array({run_of.format(row='OLD')}, {old})); END")
            continue
        for event, op in (("INSERT", "u"), ("UPDATE", "u")):
            db.execute(
                f"CREATE TRIGGER IF NOT EXISTS spool_{table}_{event[0].lower()} AFTER {event} "
                f"ON {table} BEGIN INSERT INTO spool_log(tbl, op, rid) "
                f"VALUES('{table}', '{op}', NEW.rowid); END")
        old = ", ".join(f"OLD.{k}" for k in keys)
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS spool_{table}_d AFTER DELETE ON {table} "
            f"WHEN {LOCAL_ONLY}() = 0 BEGIN "
            f"INSERT INTO spool_log(tbl, op, key) VALUES('{table}', 'd', json_array({old})); "
            "END")
    return local


def waiting(db: sqlite3.Connection) -> int:
    """Changes recorded in the spool and not yet on the server."""
    try:
        return cast(int, db.execute("SELECT COUNT(*) FROM spool_log").fetchone()[0])
    except sqlite3.Error:
        return 0


class Forwarder:
    """Copies the spool's changes to PostgreSQL; :meth:`start` runs it on a thread."""

    def __init__(self, path: str, url: str) -> None:
        self.path = path
        self.url = url
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.pg: Any = None
        self.last_error: str | None = None
        self.forwarded = 0
        self._columns: dict[str, list[str]] = {}
        self._partitions: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lockfile = path + ".lock"
        #: the host as its runs name it, and this spool on it (its row in spool_backlog)
        self.host = os.environ.get("FLOWAGENT_HOST") or os.uname().nodename
        self.identity = f"{self.host}:{os.path.abspath(path)}"

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="flowagent-forward",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        delay = RETRY_S[0]
        while not self._stop.is_set():
            try:
                moved = self.forward_once()
                delay = RETRY_S[0]
                if not moved:
                    self._stop.wait(IDLE_S)
            except Exception as exc:  # unreachable, restarted, refused: wait, try again
                self._failed(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_S[1])

    def _failed(self, exc: BaseException) -> None:
        self.last_error = one_line(exc)
        if self.pg is not None:
            try:
                self.pg.close()
            except Exception:
                pass
            self.pg = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def drain(self, timeout_s: float, attempts: int = 0) -> int:
        """Forward until the spool is empty or ``timeout_s`` passed (end of a run), giving
        up after ``attempts`` failures in a row (0: keep trying until the timeout); returns
        what is still waiting."""
        deadline = time.monotonic() + timeout_s
        failures = 0
        while time.monotonic() < deadline:
            try:
                if not self.forward_once() and not self.waiting():
                    break
                failures = 0
            except Exception as exc:
                self._failed(exc)
                failures += 1
                if attempts and failures >= attempts:
                    break
                time.sleep(min(RETRY_S[0], max(deadline - time.monotonic(), 0)))
        return self.waiting()

    def waiting(self) -> int:
        return waiting(self.db)

    def close(self) -> None:
        self.stop()
        if self.pg is not None:
            self.pg.close()
            self.pg = None
        self.db.close()

    # -- one batch ---------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One forwarder at a time per spool (the sidecar's and a launcher's): two would
        race to send older states of a row after newer ones."""
        with open(self._lockfile, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _connect(self) -> Any:
        if self.pg is None:
            pg = require_psycopg()
            conn = pg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            with conn.transaction():
                ensure_schema(conn)
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(BACKLOG_SCHEMA)
            self.pg = conn
            self._columns.clear()
            self._partitions.clear()
        return self.pg

    def _table_columns(self, table: str) -> list[str]:
        cols = self._columns.get(table)
        if cols is None:
            info = {r[1]: r[2] for r in self.db.execute(f"PRAGMA table_info({table})")}
            with self.pg.transaction():
                ensure_columns(self.pg, table, info)
            cols = self._columns[table] = list(info)
            if table in _NO_ROWID:
                cols = self._columns[table] = ["run_id", *_NO_ROWID[table]]
        return cols

    def _partition(self, run_id: str | None) -> None:
        if run_id is None or run_id in self._partitions:
            return
        with self.pg.transaction():
            ensure_partitions(self.pg, run_id)
        self._partitions.add(run_id)

    def forward_once(self) -> int:
        """Forward one batch of the log; returns how many lines it forwarded (0: none
        waiting). Raises when the server cannot take it (nothing is removed then)."""
        with self._exclusive():
            lines = self.db.execute("SELECT seq, tbl, op, rid, key FROM spool_log "
                                    "ORDER BY seq LIMIT ?", (BATCH,)).fetchall()
            if not lines:
                return 0
            pg = self._connect()
            # Rows are read after their log lines, so each is at least as new as the change
            # a line names; anything newer has a later line of its own.
            groups = self._read_groups(lines)
            for run_id in sorted({r for _op, _t, _c, rows, runs in groups for r in runs}):
                self._partition(run_id)
            left = self.waiting() - len(lines)
            with pg.transaction():
                for op, table, cols, rows, _runs in groups:
                    if op == "u":
                        self._upsert(pg, table, cols, rows)
                    else:
                        self._delete(pg, table, rows)
                pg.execute("INSERT INTO spool_backlog(spool, host, waiting, updated_ns) "
                           "VALUES(%s,%s,%s,%s) ON CONFLICT(spool) DO UPDATE "
                           "SET host=excluded.host, waiting=excluded.waiting, "
                           "updated_ns=excluded.updated_ns",
                           (self.identity, self.host, left, time.time_ns()))
            self.db.execute("DELETE FROM spool_log WHERE seq<=?", (lines[-1][0],))
            self.forwarded += len(lines)
            self.last_error = None
            return len(lines)

    def _read_groups(self, lines: list[sqlite3.Row]) -> list[tuple[Any, ...]]:
        """The batch as runs of one operation on one table, with the rows they name now.

        Tables are independent on the server (no foreign keys), so only the order within a
        table matters: each table's lines are split into runs of upserts and deletes, and a
        row changed several times in a run is sent once."""
        by_table: dict[str, list[sqlite3.Row]] = {}
        for line in lines:
            by_table.setdefault(line["tbl"], []).append(line)
        parts: list[tuple[str, str, list[sqlite3.Row]]] = []
        for table, tlines in by_table.items():
            start = 0
            for k in range(1, len(tlines) + 1):
                if k == len(tlines) or tlines[k]["op"] != tlines[start]["op"]:
                    parts.append((table, tlines[start]["op"], tlines[start:k]))
                    start = k
        groups: list[tuple[Any, ...]] = []
        for table, op, part in parts:
            if table not in pgschema.KEYS:
                continue
            if op == "u":
                cols = self._table_columns(table)
                rids = list(dict.fromkeys(r["rid"] for r in part))
                rows: list[tuple[Any, ...]] = []
                for k in range(0, len(rids), 500):
                    chunk = rids[k:k + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += [tuple(r) for r in self.db.execute(
                        f"SELECT {', '.join(cols)} FROM {table} WHERE rowid IN ({marks})",
                        chunk)]
                runs = {r[cols.index("run_id")] for r in rows} if "run_id" in cols else set()
                groups.append(("u", table, cols, rows, runs))
            elif op == "i":  # whole rows in the line (tables without a rowid)
                cols = self._table_columns(table)
                rows = [tuple(json.loads(r["key"])) for r in part]
                rows = [r for r in rows if r[0] is not None]
                groups.append(("u", table, cols, rows, {r[0] for r in rows}))
            else:
                rows = [tuple(json.loads(r["key"])) for r in part]
                groups.append(("d", table, list(pgschema.KEYS[table]), rows, set()))
        return groups

    @staticmethod
    def _upsert(pg: Any, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        keys = pgschema.KEYS[table]
        # Rows in key order: two sidecars writing shared rows (shapes) lock them in the same
        # order and never deadlock.
        if table == "shapes":
            rows = sorted(rows, key=lambda r: r[cols.index("sid")])
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join(["%s"] * len(cols))
        updates = [c for c in cols if c not in keys]
        if table in ("shapes", "process_samples") or not updates:
            action = "DO NOTHING"
        else:
            action = "DO UPDATE SET " + ", ".join(f'"{c}"=EXCLUDED."{c}"' for c in updates)
        sql = (f"INSERT INTO {table} ({names}) VALUES ({marks}) "
               f"ON CONFLICT ({pgschema.conflict_target(table)}) {action}")
        with pg.cursor() as cur:
            cur.executemany(sql, rows)

    @staticmethod
    def _delete(pg: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        keys = pgschema.KEYS[table]
        if table == "session_chunks":
            keys = ("run_id", "sid", "chunk_id")
        hashed = pgschema.HASHED.get(table, set())
        cond = " AND ".join(f"md5({k})=md5(%s)" if k in hashed else f"{k}=%s" for k in keys)
        rows = [r for r in rows if all(v is not None for v in r)]
        if rows:
            with pg.cursor() as cur:
                cur.executemany(f"DELETE FROM {table} WHERE {cond}", rows)


def describe(url: str, waiting_changes: int, last_error: str | None,
             where: str = "the local spool") -> str:
    """One line for the run summary about what has not reached the server yet."""
    if not waiting_changes:
        return f"all changes forwarded to {redact(url)}"
    why = f" ({last_error})" if last_error else ""
    return (f"{waiting_changes} changes waiting in {where} for {redact(url)}{why}; the next "
            "'flowagent run' with this data directory forwards them")
