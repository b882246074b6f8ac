"""SQLite store: the embedded default (WAL, batched writes, one writer: the run's sidecar).

Layout: ``runs`` and ``processes`` describe what ran; ``functions`` (per run, keyed by
``module:qualname``) and ``shapes`` (global, interned text) keep names out of the big tables;
``sessions`` lists every session (with the functions it called, ``fids``, and what they
raised, ``raised``, so searches need no call record), sessions of one finished call in a
compact form (``session_kinds`` and ``single_sessions``, read through a view of the same
name and columns, see _SINGLES); the calls of the kept session trees
live in ``chunks`` (compressed columnar batches, see :mod:`flowagent.store.chunks`) indexed
by ``session_chunks``; ``graph_nodes``, ``graph_edges``, ``shape_counts`` and ``paths`` hold
the merged architecture graph's aggregates, which are kept for every session even when its
tree is not.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from contextlib import contextmanager
from itertools import chain, compress, repeat
from operator import eq, itemgetter, not_, sub

from ..protocol import jsonline  # json's C codec: no `re` at the sidecar's start
from ..protocol.wire import CALL_FIELDS, Decoder, VERSION as WIRE_VERSION
from ..errors import StoreDamagedError, StoreError
from . import chunks as C
from .api import (
    AggregateRows, AggregateVersion, ClusterStats, EdgeStats, ExceptionCount,
    FleetEntry, FunctionDef, FunctionDict, NodeStats, OpenSession, PathCount, ProcessCounters,
    ProcessDict, ProcessProgress, ProcessSample, ProcessState, RootCount, RunDict, RunEnd,
    RunTotals, SessionDict, SessionEnd, SessionFilter, SessionRow, SessionTotals, ShapeCount,
    VariantResult, VariantStats,
)
from .traces import SCHEMA as TRACE_SCHEMA, TABLES as TRACE_TABLES
from . import lineage

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, cast
else:
    def cast(_type: object, value: object) -> object:  # typing.cast, without typing
        return value

SCHEMA_VERSION = 4
# Chunks are wire batches (flowagent.store.chunks): a store is readable by the same schema
# and the same wire version only, so both make up the data format a store is stamped with.
DATA_FORMAT = f"{SCHEMA_VERSION}.{WIRE_VERSION}"
# A SQLite store written with one-call sessions in their compact tables (see _SINGLES) is
# stamped with this: a version that only knows DATA_FORMAT would not see those sessions and
# refuses it. This version reads both, and a writer opening a DATA_FORMAT store adds the
# tables and restamps it (its rows stay where they are).
SQLITE_FORMAT = f"{DATA_FORMAT}.s1"
_READABLE = (DATA_FORMAT, SQLITE_FORMAT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY, started_ns INTEGER, ended_ns INTEGER, argv TEXT, cwd TEXT,
  status TEXT, exit_code INTEGER, backend TEXT,
  sessions INTEGER DEFAULT 0, calls INTEGER DEFAULT 0, errors INTEGER DEFAULT 0,
  incomplete_sessions INTEGER DEFAULT 0, produced_events INTEGER DEFAULT 0,
  dropped_events INTEGER DEFAULT 0, dropped_batches INTEGER DEFAULT 0,
  corrupt_frames INTEGER DEFAULT 0, duplicate_frames INTEGER DEFAULT 0,
  agent_errors INTEGER DEFAULT 0, processes INTEGER DEFAULT 0,
  sampled_out INTEGER DEFAULT 0, hook_errors INTEGER DEFAULT 0, hook_error TEXT,
  pruned_sessions INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS processes(
  run_id TEXT, pk TEXT, pid INTEGER, ppid INTEGER, info TEXT, started_ns INTEGER,
  last_seq INTEGER DEFAULT 0, ring_tail INTEGER DEFAULT 0, produced_events INTEGER DEFAULT 0,
  dropped_events INTEGER DEFAULT 0, dropped_batches INTEGER DEFAULT 0,
  stored_events INTEGER DEFAULT 0, duplicate_frames INTEGER DEFAULT 0,
  corrupt_frames INTEGER DEFAULT 0, agent_errors INTEGER DEFAULT 0, closed INTEGER DEFAULT 0,
  PRIMARY KEY(run_id, pk));
CREATE TABLE IF NOT EXISTS functions(
  run_id TEXT, fid INTEGER, name TEXT, module TEXT, qualname TEXT, file TEXT, line INTEGER,
  kind TEXT, params TEXT, PRIMARY KEY(run_id, fid));
CREATE UNIQUE INDEX IF NOT EXISTS functions_name ON functions(run_id, name);
CREATE TABLE IF NOT EXISTS shapes(sid INTEGER PRIMARY KEY, text TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS sessions(
  sid INTEGER PRIMARY KEY, session_id TEXT UNIQUE, run_id TEXT, name TEXT, root_fid INTEGER,
  pid INTEGER, pk TEXT, thread TEXT, result TEXT, complete INTEGER, started_ns INTEGER,
  ended_ns INTEGER, duration_ns INTEGER, calls INTEGER DEFAULT 0, errors INTEGER DEFAULT 0,
  variant TEXT, tree_kept INTEGER DEFAULT 1, fids TEXT, raised TEXT);
CREATE INDEX IF NOT EXISTS sessions_run ON sessions(run_id, started_ns);
-- retention walks a run's kept trees newest first, skipping the recent window; pruned
-- sessions (tree_kept 0: most of a long run's) are never looked up by it, and leaving them
-- out saves an index entry per row written pruned (a drain writes most rows that way).
-- Queries that use it say tree_kept!=0 (with tree_kept>0, SQLite 3.40 took that range
-- over tree_kept=? and sorted). It replaced a full index of the same columns.
DROP INDEX IF EXISTS sessions_kept;
CREATE INDEX IF NOT EXISTS sessions_kept_live ON sessions(run_id, tree_kept, sid)
  WHERE tree_kept!=0;
CREATE TABLE IF NOT EXISTS chunks(
  chunk_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, pk TEXT, ids INTEGER, calls INTEGER,
  placeholders INTEGER DEFAULT 0, data BLOB);
CREATE TABLE IF NOT EXISTS session_chunks(
  sid INTEGER, chunk_id INTEGER, calls INTEGER, PRIMARY KEY(sid, chunk_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_chunks_chunk ON session_chunks(chunk_id);
CREATE TABLE IF NOT EXISTS graph_nodes(
  run_id TEXT, fid INTEGER, calls INTEGER, errors INTEGER, partials INTEGER, total_ns INTEGER,
  self_ns INTEGER, min_ns INTEGER, max_ns INTEGER, roots INTEGER, cpu_ns INTEGER, hist TEXT,
  PRIMARY KEY(run_id, fid));
CREATE TABLE IF NOT EXISTS variants(
  run_id TEXT, variant TEXT, root_fid INTEGER, count INTEGER, errors INTEGER, hist TEXT,
  first_ns INTEGER, examples TEXT, PRIMARY KEY(run_id, variant));
CREATE TABLE IF NOT EXISTS error_clusters(
  run_id TEXT, exc_sid INTEGER, fid INTEGER, path TEXT, handled INTEGER, count INTEGER,
  first_ns INTEGER, last_ns INTEGER, examples TEXT,
  PRIMARY KEY(run_id, exc_sid, fid, path, handled));
CREATE TABLE IF NOT EXISTS process_samples(
  run_id TEXT, pid INTEGER, ts_ns INTEGER, cpu_s REAL, rss_bytes INTEGER);
CREATE TABLE IF NOT EXISTS graph_edges(
  run_id TEXT, caller_fid INTEGER, callee_fid INTEGER, result INTEGER, count INTEGER,
  total_ns INTEGER, PRIMARY KEY(run_id, caller_fid, callee_fid, result));
CREATE TABLE IF NOT EXISTS shape_counts(
  run_id TEXT, fid INTEGER, io TEXT, shape_sid INTEGER, count INTEGER, first_session TEXT,
  PRIMARY KEY(run_id, fid, io, shape_sid));
CREATE TABLE IF NOT EXISTS paths(
  run_id TEXT, path TEXT, count INTEGER, PRIMARY KEY(run_id, path));
"""

# Sessions of exactly one finished call (most of a run that serves many tiny requests) in
# a narrow table: what such sessions share (run, name, function, process, thread, result,
# variant...) once per kind, and per session only its row id, its number in its process
# (its id is "<pk>-<number>"), start, duration and retention mark: a row of ~30 bytes with
# no text and small integer index entries, where a ``sessions`` row took ~150 bytes and text
# entries in its indexes (most of a drain's SQLite time). Readers see both tables as one
# ``sessions`` (a temporary view of each connection, _SESSIONS_VIEW); writes name
# ``main.sessions``. Indexes: kept rows (retention; most are written pruned), the number
# (a session by its id) and the start (a page of a list in start order).
_SINGLES = """
CREATE TABLE IF NOT EXISTS session_kinds(
  gid INTEGER PRIMARY KEY, run_id TEXT, name TEXT, root_fid INTEGER, pid INTEGER, pk TEXT,
  thread TEXT, result TEXT, errors INTEGER, variant TEXT, fids TEXT, raised TEXT);
CREATE INDEX IF NOT EXISTS session_kinds_run ON session_kinds(run_id, pk, variant);
CREATE TABLE IF NOT EXISTS single_sessions(
  sid INTEGER PRIMARY KEY, gid INTEGER, ses INTEGER, started_ns INTEGER,
  duration_ns INTEGER, tree_kept INTEGER);
CREATE INDEX IF NOT EXISTS single_sessions_kept ON single_sessions(tree_kept, sid)
  WHERE tree_kept!=0;
CREATE INDEX IF NOT EXISTS single_sessions_ses ON single_sessions(ses);
CREATE INDEX IF NOT EXISTS single_sessions_start ON single_sessions(started_ns);
"""
# The columns of a one-call session as a ``sessions`` row (in _SESSION_ROW's order).
_SINGLE_ROW = ("SELECT x.sid AS sid, k.pk || '-' || x.ses AS session_id, k.run_id AS run_id, "
               "k.name AS name, k.root_fid AS root_fid, k.pid AS pid, k.pk AS pk, "
               "k.thread AS thread, k.result AS result, 1 AS complete, "
               "x.started_ns AS started_ns, x.started_ns + x.duration_ns AS ended_ns, "
               "x.duration_ns AS duration_ns, 1 AS calls, k.errors AS errors, "
               "k.variant AS variant, x.tree_kept AS tree_kept, k.fids AS fids, "
               "k.raised AS raised FROM main.single_sessions x "
               "JOIN main.session_kinds k ON k.gid=x.gid")
_SESSIONS_VIEW = ("CREATE TEMP VIEW IF NOT EXISTS sessions AS SELECT sid, session_id, run_id, "
                  "name, root_fid, pid, pk, thread, result, complete, started_ns, ended_ns, "
                  f"duration_ns, calls, errors, variant, tree_kept, fids, raised "
                  f"FROM main.sessions UNION ALL {_SINGLE_ROW}")
_NEXT_SID = ("MAX(COALESCE((SELECT MAX(sid) FROM main.sessions), 0), "
             "COALESCE((SELECT MAX(sid) FROM main.single_sessions), 0)) + 1")
_KIND = ("run_id", "name", "root_fid", "pid", "pk", "thread", "result", "errors", "variant",
         "fids", "raised")

# Columns added to a table after its schema version shipped: added in place when missing
# (additive, so stores of the same data format stay readable by every version).
_ADDED_COLUMNS = (
    ("runs", "otlp_sessions", "INTEGER DEFAULT 0"),
    ("runs", "otlp_spans", "INTEGER DEFAULT 0"),
    ("runs", "otlp_undelivered", "INTEGER DEFAULT 0"),
    # which service the run recorded and on which machine (fleets: many runs, one store)
    ("runs", "service", "TEXT"),
    ("runs", "host", "TEXT"),
    # profile backend: times the program's own profile function displaced recording in a
    # thread, and for how long in all (what ran meanwhile was not recorded)
    ("runs", "profile_displacements", "INTEGER DEFAULT 0"),
    ("runs", "profile_displaced_ns", "INTEGER DEFAULT 0"),
)

# A whole sessions row, as SQLiteStore.insert_sessions writes it.
_SESSION_ROW = ("sid", "session_id", "run_id", "name", "root_fid", "pid", "pk", "thread",
                "result", "complete", "started_ns", "ended_ns", "duration_ns", "calls",
                "errors", "variant", "tree_kept", "fids", "raised")
_INSERT_SESSIONS = (f"INSERT INTO sessions({', '.join(_SESSION_ROW)}) "
                    f"VALUES({', '.join('?' * len(_SESSION_ROW))})")
_INSERT_MAIN = _INSERT_SESSIONS.replace("INTO sessions(", "INTO main.sessions(")
_CHUNK_CACHE = 8  # decoded chunks kept by a reader (a frame is at most a few MB decoded)
_SES_FIELD = CALL_FIELDS.index("ses")
# The writer's page cache, KiB. A drain writes transactions of thousands of session rows
# into a table with four indexes; SQLite's default (2 MiB) spills dirty pages to the WAL
# mid-transaction and reads them back. Pages are only held once used.
_WRITER_CACHE_KIB = 32 * 1024
# Rows per INSERT statement where a drain writes hundreds of thousands (one-call sessions'
# narrow rows, their chunk links): a statement per row opens the table's and each index's
# cursor and binds, steps and resets per row, about as much as SQLite's B-tree work; one
# statement of many rows pays that per statement (at most 6 x 256 parameters, far below
# SQLite's limit of 32,766).
_MANY_ROWS = 256
_INSERT_NARROW = "INSERT INTO single_sessions VALUES"
_INSERT_LINKS = "INSERT OR IGNORE INTO session_chunks VALUES"


def _insert_flat(db: sqlite3.Connection, head: str, width: int, flat: list[Any], n: int,
                 rest: Callable[[int], Iterable[Sequence[Any]]]) -> None:
    """``head`` (``INSERT ... VALUES``) of ``n`` rows of ``width`` values laid end to end
    in ``flat``, in order: whole statements of :data:`_MANY_ROWS` rows, then a statement
    per row for ``rest(first row left)``."""
    one = f"{head}({','.join('?' * width)})"
    full = n - n % _MANY_ROWS
    if full:
        span = width * _MANY_ROWS
        db.executemany(f"{head}{','.join([one[len(head):]] * _MANY_ROWS)}",
                       map(flat.__getitem__, map(slice, range(0, full * width, span),
                                                 range(span, full * width + 1, span))))
    if full < n:
        db.executemany(one, rest(full))


def _insert_narrow(db: sqlite3.Connection, cols: Sequence[Sequence[Any]]) -> None:
    """Rows of ``single_sessions`` given column by column, in order (see _insert_flat)."""
    _insert_flat(db, _INSERT_NARROW, len(cols), list(chain.from_iterable(zip(*cols))),
                 len(cols[0]), lambda full: zip(*(col[full:] for col in cols)))


def _insert_links(db: sqlite3.Connection, links: Iterable[Sequence[Any]]) -> None:
    """Rows of ``session_chunks``, in order (see _insert_flat); rows of another width are
    left to a statement per row, which refuses them as before."""
    rows = links if isinstance(links, list) else list(links)
    flat = list(chain.from_iterable(rows))
    if len(flat) != 3 * len(rows):
        db.executemany(f"{_INSERT_LINKS}(?,?,?)", rows)
        return
    _insert_flat(db, _INSERT_LINKS, 3, flat, len(rows), lambda full: rows[full:])


def _with_ids(cols: Sequence[Sequence[Any]], numbers: Sequence[int | None] | None
              ) -> Sequence[Sequence[Any]]:
    """``cols`` with its ids column made (``<pk>-<number>`` of each row) where the writer
    left it None (see :meth:`SQLiteStore.insert_session_columns`)."""
    if cols[1] is not None:
        return cols
    if numbers is None or None in numbers:
        raise StoreError("session rows without ids need every row's number")
    return [cols[0], list(map("{}-{}".format, cols[6], numbers)), *cols[2:]]


def _live(tree_kept: int) -> str:
    """The term that lets a query of sessions kept for ``tree_kept`` use the index of kept
    sessions (``sessions_kept_live``, which holds only rows with tree_kept!=0)."""
    return " AND tree_kept!=0" if tree_kept != 0 else ""


def _chunk_decoder() -> Decoder:
    dec: Decoder | None = getattr(_DECODER, "dec", None)
    if dec is None:
        dec = _DECODER.dec = Decoder()
    return dec


# One per thread, made on first use (zstandard loads): a decompressor must never be used by
# two threads at once (the viewer's requests run in threads).
_DECODER = threading.local()


def session_where(run_id: str | None, result: str | None, root: str | None,
                  min_duration_ns: int | None, alias: str = "", service: str | None = None,
                  host: str | None = None, table: str = "sessions") -> tuple[str, list[Any]]:
    """SQL condition and arguments for the session list filters (one definition, so a count
    always matches the rows listed)."""
    # a session of a child process is part of its parent's: listed with it, not alone
    where: list[str] = ["NOT " + lineage.LINKED.format(alias=alias or "sessions.",
                                                       table=table)]
    args: list[Any] = []
    for column, op, value in (("run_id", "=?", run_id), ("result", "=?", result),
                              ("name", " LIKE ?", f"%{root}%" if root else None),
                              ("duration_ns", ">=?", min_duration_ns or None),
                              ("run_id", " IN (SELECT run_id FROM runs WHERE service=?)",
                               service),
                              ("run_id", " IN (SELECT run_id FROM runs WHERE host=?)", host)):
        if value is not None and value != "":
            where.append(f"{alias}{column}{op}")
            args.append(value)
    return " AND ".join(where), args


def _split_id(session_id: str) -> tuple[str | None, int]:
    """A session id's process key and number (``"<pk>-<number>"``, the number written
    without leading zeros, as one-call sessions' ids are); (None, 0) for any other form."""
    pk, _, tail = session_id.rpartition("-")
    if not pk or not tail.isdigit() or str(int(tail)) != tail:
        return None, 0
    return pk, int(tail)


# SQLite's result codes for a file that is not (or no longer) a database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def damage_error(exc: BaseException, path: str = "the flowagent database"
                 ) -> StoreDamagedError | None:
    """The one-line error for a damaged database, if ``exc`` says the file is one (corrupt,
    not a database); None for anything else (locked, unwritable, full disk)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if (code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)) or \
            "malformed" in text or "not a database" in text:
        return StoreDamagedError(
            f"{path} is damaged ({text}); flowagent neither reads nor writes it: move it away "
            f"(e.g. mv {path} {path}.damaged) to start a new store, or restore a copy")
    return None
def _add_columns(db: sqlite3.Connection) -> None:
    for table, column, decl in _ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another writer added it just now
                    raise


class SQLiteStore:
    """One connection. The sidecar writes; the CLI and viewer open read-only."""

    capabilities: Mapping[str, bool] = {"shared": False}
    # Whether a writer keeps one-call sessions in the compact tables (_SINGLES); a spool
    # forwards table rows as they are and keeps them in ``sessions``.
    compact_singles = True
    _singles = False  # this connection sees the compact tables (through the view)

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        self.url = path
        self.readonly = readonly
        try:
            if readonly:
                if not os.path.exists(path):
                    raise StoreError(
                        f"no flowagent data at {path}: record something first with "
                        "'flowagent run ...', or pass --data-dir pointing at an existing one")
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10,
                                          check_same_thread=False)
            else:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                          check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
                self.db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, "
                                "value TEXT)")
                self._check_version(path)
                self.db.executescript(_SCHEMA)
                self.db.executescript(TRACE_SCHEMA)
                self.db.executescript(lineage.SCHEMA)
                _add_columns(self.db)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES('schema_version', ?)",
                                (DATA_FORMAT,))
            # The first read of the schema: a damaged file fails here, before anything
            # is read from it or written into it.
            self.db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            if readonly:
                lineage.readable(self.db)
        except sqlite3.Error as exc:
            damaged = damage_error(exc, path)
            if damaged is not None:
                raise damaged from None
            raise StoreError(f"cannot open the flowagent database {path}: {exc}; check that "
                             "the data directory exists, is writable and has free space") from None
        if readonly:
            self._check_version(path)
        self._singles = self._open_singles(readonly)
        self.db.row_factory = sqlite3.Row
        self._shape_ids: dict[str, int] = {}
        self._shape_text: dict[int, str] = {}
        self._chunks: OrderedDict[int, tuple[dict[int, list[tuple[Any, ...]]], tuple[int, int]]] = (
            OrderedDict())

    def _check_version(self, path: str) -> None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error:
            row = None  # an empty database: this version creates it
        if row is not None and row[0] not in _READABLE:
            self.db.close()
            raise StoreError(
                f"{path} was written by a different flowagent version (data format "
                f"{row[0]}, this one reads {' and '.join(_READABLE)}); use another "
                "--data-dir or move the old one away")

    def _open_singles(self, readonly: bool) -> bool:
        """Make the compact tables of one-call sessions (a writer; an older store is
        restamped) and this connection's ``sessions`` view over both tables; False where
        there are none (a spool, or an older store opened to read)."""
        if not self.compact_singles:
            return False
        try:
            if not readonly:
                self.db.executescript(_SINGLES)
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                                (SQLITE_FORMAT,))
            elif not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                     "name='single_sessions'").fetchone():
                return False
            self.db.execute(_SESSIONS_VIEW)
        except sqlite3.Error as exc:
            self.db.close()
            raise StoreError(f"cannot open the flowagent database {self.path}: {exc}; check "
                             "that the data directory is writable and has free space") from None
        return True

    @property
    def _table(self) -> str:
        """The ``sessions`` table itself, for writes (readers see the view of both)."""
        return "main.sessions" if self._singles else "sessions"

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT frame")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO frame")
            self.db.execute("RELEASE frame")
            raise
        self.db.execute("RELEASE frame")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- writer helpers ------------------------------------------------------------------
    def shape_id(self, text: str) -> int:
        sid = self._shape_ids.get(text)
        if sid is None:
            row = self.db.execute("SELECT sid FROM shapes WHERE text=?", (text,)).fetchone()
            if row is None:
                sid = cast(int, self.db.execute("INSERT INTO shapes(text) VALUES(?)",
                                                (text,)).lastrowid)
            else:
                sid = row[0]
            self._shape_ids[text] = sid
            self._shape_text[sid] = text
        return sid

    def add_chunk(self, run_id: str, pk: str, ids: int, calls: int, data: bytes,
                  placeholders: int = 0) -> int:
        """Store one chunk of call records (see :mod:`flowagent.store.chunks`); returns its
        id, for :meth:`link_chunks`."""
        return cast(int, self.db.execute(
            "INSERT INTO chunks(run_id, pk, ids, calls, placeholders, data) VALUES(?,?,?,?,?,?)",
            (run_id, pk, ids, calls, placeholders, data)).lastrowid)

    def link_chunks(self, links: Iterable[tuple[int, int, int]]) -> None:
        """``(session rowid, chunk id, calls of that session in it)`` for each pair."""
        _insert_links(self.db, links)

    def add_calls(self, session_id: str, rows: list[tuple[Any, ...]]) -> None:
        """Add calls to a stored session, in store layout (:data:`chunks.STORE_FIELDS`):
        for importers and tools that write a store without recording."""
        self._unpack_single(session_id)
        row = self.db.execute("SELECT sid, run_id, pk, fids, raised FROM sessions WHERE "
                              "session_id=?", (session_id,)).fetchone()
        if row is None:
            raise StoreError(f"no session {session_id} in {self.path}: add the session first")
        ses = C.session_number(session_id)
        chunk = self.add_chunk(row[1], row[2], C.STORE, len(rows),
                               C.encode(C.store_rows(rows, ses)))
        self.link_chunks([(row[0], chunk, len(rows))])
        self.db.execute(f"UPDATE {self._table} SET fids=?, raised=? WHERE sid=?",
                        (*C.summary(rows, row[3], row[4]), row[0]))

    def unlink_chunks(self, sids: list[int]) -> list[int]:
        """Forget the calls of these sessions (retention): chunks nobody else needs are
        deleted; returns the chunks other sessions still share."""
        shared: set[int] = set()
        for i in range(0, len(sids), 500):
            part = sids[i:i + 500]
            marks = ",".join("?" * len(part))
            ids = [r[0] for r in self.db.execute(
                f"SELECT DISTINCT chunk_id FROM session_chunks WHERE sid IN ({marks})", part)]
            self.db.execute(f"DELETE FROM session_chunks WHERE sid IN ({marks})", part)
            for chunk in ids:
                if self.db.execute("SELECT 1 FROM session_chunks WHERE chunk_id=? LIMIT 1",
                                   (chunk,)).fetchone():
                    shared.add(chunk)
                else:
                    self.db.execute("DELETE FROM chunks WHERE chunk_id=?", (chunk,))
        return sorted(shared)

    def compact_chunk(self, chunk_id: int, keep_below: float = 0.25) -> bool:
        """Rewrite a chunk that holds mostly calls of pruned sessions with only the calls of
        the sessions still linked to it (so a kept session does not keep a whole frame of
        pruned ones alive). True when it was rewritten."""
        row = self.db.execute("SELECT calls, data FROM chunks WHERE chunk_id=?",
                              (chunk_id,)).fetchone()
        if row is None:
            return False
        linked = self.db.execute(
            f"SELECT s.session_id, sc.calls FROM session_chunks sc JOIN {self._table} s ON "
            "s.sid=sc.sid WHERE sc.chunk_id=?", (chunk_id,)).fetchall()
        if self._singles:  # the view would be read whole for a join
            linked += self.db.execute(
                "SELECT k.pk || '-' || x.ses, sc.calls FROM session_chunks sc JOIN "
                "main.single_sessions x ON x.sid=sc.sid JOIN main.session_kinds k ON "
                "k.gid=x.gid WHERE sc.chunk_id=?", (chunk_id,)).fetchall()
        kept = sum(r[1] for r in linked)
        if kept >= row[0] * keep_below:
            return False
        wanted = {C.session_number(r[0]) for r in linked}
        # Column-wise: only the calls kept become records (a frame holds thousands).
        batch = _chunk_decoder().decode_columns(bytes(row[1]))
        cols = batch["calls"].cols
        keep = list(map(wanted.__contains__, cols[_SES_FIELD]))
        rows = list(zip(*(list(compress(col, keep)) for col in cols)))
        a = batch.get("anchor") or (0, 0)
        anchor = (int(a[0]), int(a[1]))
        self.db.execute("UPDATE chunks SET calls=?, data=? WHERE chunk_id=?",
                        (len(rows), C.encode(rows, anchor), chunk_id))
        return True

    def shape_text(self, sid: int | None) -> str | None:
        if not sid:
            return None
        text = self._shape_text.get(sid)
        if text is None:
            row = self.db.execute("SELECT text FROM shapes WHERE sid=?", (sid,)).fetchone()
            text = row[0] if row else None
            if text is not None:
                self._shape_text[sid] = text
        return text

    def create_run(self, run_id: str, started_ns: int, service: str | None,
                   host: str | None) -> bool:
        """The run's row, made by its sidecar as it starts (status ``running``); False when
        a run of that id exists already."""
        with self.transaction():
            return bool(self.db.execute(
                "INSERT OR IGNORE INTO runs(run_id, started_ns, status, service, host) "
                "VALUES(?,?,'running',?,?)", (run_id, started_ns, service, host)).rowcount)

    # -- size and pruning (flowagent.store.limit) ------------------------------------------
    def stored_bytes(self) -> int:
        """Bytes the database holds in use: its pages minus the free ones (SQLite reuses
        those, so the file stays near the high-water mark of this number)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return cast(int, (pages - free) * size)

    def prunable_runs(self, keep: str) -> list[str]:
        """Runs that may be deleted to bound the data directory, oldest first: every ended
        run except ``keep``; never one still recording (``running``) or whose processes were
        still running when it ended (``pending``: its rings wait for a resume)."""
        return [r[0] for r in self.db.execute(
            "SELECT run_id FROM runs WHERE run_id<>? AND ended_ns IS NOT NULL AND "
            "COALESCE(status,'') NOT IN ('running','pending') ORDER BY started_ns, run_id",
            (keep,))]

    def delete_run(self, run_id: str) -> None:
        """Forget one run entirely (interned shapes stay: other runs share them)."""
        with self.transaction():
            db = self.db
            db.execute("DELETE FROM session_chunks WHERE chunk_id IN "
                       "(SELECT chunk_id FROM chunks WHERE run_id=?)", (run_id,))
            db.execute("DELETE FROM session_chunks WHERE sid IN "
                       "(SELECT sid FROM sessions WHERE run_id=?)", (run_id,))
            if self._singles:
                db.execute("DELETE FROM single_sessions WHERE gid IN "
                           "(SELECT gid FROM session_kinds WHERE run_id=?)", (run_id,))
                db.execute("DELETE FROM session_kinds WHERE run_id=?", (run_id,))
            for table in ("chunks", self._table, "functions", "processes", "graph_nodes",
                          "graph_edges", "variants", "error_clusters", "process_samples",
                          "shape_counts", "paths", "runs", *TRACE_TABLES,
                          *lineage.TABLES):
                db.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))  # noqa: S608

    # -- reading -------------------------------------------------------------------------
    def runs(self, *, service: str | None = None, host: str | None = None,
             limit: int | None = None) -> list[RunDict]:
        where, args = ["1=1"], []
        for column, value in (("service", service), ("host", host)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        rows = self.db.execute(f"SELECT * FROM runs WHERE {' AND '.join(where)} "
                               "ORDER BY started_ns DESC LIMIT ?",
                               (*args, -1 if limit is None else limit)).fetchall()
        return cast("list[RunDict]", [dict(r) for r in rows])

    def run(self, run_id: str) -> RunDict | None:
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return cast(RunDict, dict(row)) if row else None

    def latest_run(self) -> str | None:
        row = self.db.execute("SELECT run_id FROM runs ORDER BY started_ns DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def processes(self, run_id: str) -> list[ProcessDict]:
        rows = self.db.execute("SELECT * FROM processes WHERE run_id=? ORDER BY started_ns",
                               (run_id,)).fetchall()
        return cast("list[ProcessDict]", [dict(r) for r in rows])

    def functions(self, run_id: str) -> dict[int, FunctionDict]:
        rows = self.db.execute("SELECT * FROM functions WHERE run_id=?", (run_id,)).fetchall()
        return cast("dict[int, FunctionDict]",
                    {r["fid"]: dict(r, params=jsonline.loads(r["params"] or "[]")) for r in rows})

    def sessions(self, run_id: str | None = None, *, result: str | None = None,
                 root: str | None = None, min_duration_ns: int | None = None,
                 search: str | None = None, order: str = "started", limit: int = 100,
                 offset: int = 0, service: str | None = None,
                 host: str | None = None) -> list[SessionDict]:
        clause, args = session_where(run_id, result, root, min_duration_ns, alias="s.",
                                     service=service, host=host, table=self._table)
        where = [clause]
        if search:
            # sessions.fids lists the session's functions as " 1 5 9 ".
            where.append("EXISTS (SELECT 1 FROM functions f WHERE f.run_id=s.run_id AND "
                         "f.name LIKE ? AND instr(s.fids, ' ' || f.fid || ' ') > 0)")
            args.append(f"%{search}%")
        orders = {"started": "s.started_ns", "duration": "s.duration_ns DESC",
                  "calls": "s.calls DESC", "-started": "s.started_ns DESC"}
        by = orders.get(order, "s.started_ns")
        sql = (f"SELECT s.* FROM sessions s WHERE {' AND '.join(where)} "
               f"ORDER BY {by}, s.sid LIMIT ? OFFSET ?")
        params: tuple[Any, ...] = (*args, limit, offset)
        if self._singles:
            # Each table's first rows in that order (through its own index where one fits),
            # merged: the view of both would be read whole and sorted for one page.
            arm = f"WHERE {' AND '.join(where)} ORDER BY {by}, s.sid LIMIT ?"
            sql = (f"SELECT * FROM (SELECT s.* FROM main.sessions s {arm}) UNION ALL "
                   f"SELECT * FROM (SELECT s.* FROM ({_SINGLE_ROW}) s {arm}) "
                   f"ORDER BY {by.replace('s.', '')}, sid LIMIT ? OFFSET ?")
            params = (*args, limit + offset, *args, limit + offset, limit, offset)
        rows = self.db.execute(sql, params).fetchall()
        return cast("list[SessionDict]",
                    lineage.with_descendants(self.db, [self.session_dict(r) for r in rows],
                                             self._table))

    def count_sessions(self, run_id: str | None = None) -> int:
        top = "NOT " + lineage.LINKED.format(alias="sessions.", table=self._table)
        if run_id:
            return cast(int, self.db.execute(
                f"SELECT COUNT(*) FROM sessions WHERE run_id=? AND {top}", (run_id,)).fetchone()[0])
        return cast(int,
                    self.db.execute(f"SELECT COUNT(*) FROM sessions WHERE {top}").fetchone()[0])

    def _session_row(self, session_id: str) -> Any:
        """One session's row by its id: the ``sessions`` table's index, then the one-call
        sessions of that process with that number (no index of their ids: a scan of the
        narrow table, paid by a reader instead of by every row written)."""
        if not self._singles:
            return self.db.execute("SELECT * FROM sessions WHERE session_id=?",
                                   (session_id,)).fetchone()
        row = self.db.execute("SELECT * FROM main.sessions WHERE session_id=?",
                              (session_id,)).fetchone()
        if row is None:
            pk, number = _split_id(session_id)
            if pk is not None:
                row = self.db.execute(f"{_SINGLE_ROW} WHERE x.ses=? AND k.pk=?",
                                      (number, pk)).fetchone()
        return row

    def _unpack_single(self, session_id: str) -> None:
        """Move a one-call session into the ``sessions`` table (a tool adds calls to it)."""
        if not self._singles:
            return
        pk, number = _split_id(session_id)
        if pk is None:
            return
        row = self.db.execute("SELECT x.sid FROM main.single_sessions x JOIN "
                              "main.session_kinds k ON k.gid=x.gid WHERE x.ses=? AND k.pk=?",
                              (number, pk)).fetchone()
        if row is not None:
            self.db.execute(f"INSERT INTO main.sessions {_SINGLE_ROW} WHERE x.sid=?", (row[0],))
            self.db.execute("DELETE FROM single_sessions WHERE sid=?", (row[0],))

    def insert_session_columns(self, cols: Sequence[Sequence[Any]],
                               singles: Sequence[int | None] | None = None) -> None:
        """As :meth:`insert_session_rows`, the rows given column by column. Sessions of one
        finished call whose id is their process's key and number go to the compact tables
        (_SINGLES), a kind per distinct set of shared values; any other row to
        ``sessions``. ``singles``, where the writer knows them: each row's session number
        when the row is such a session by construction (id ``<pk>-<number>``, complete, one
        call, its duration its end minus its start), else None; it spares reading that back
        from the row's text. The ids column may be None where ``singles`` numbers every row:
        each id is then ``<pk>-<number>``, made only if the row is stored as text."""
        if not self._singles or not cols[0]:
            self.insert_session_rows(zip(*_with_ids(cols, singles)))
            return
        pks, m = cols[6], len(cols[0])
        runs = sorted(set(cols[2]), key=str)
        marks = ",".join("?" * len(runs))
        linked = {r[0] for r in self.db.execute(
            f"SELECT session_id FROM session_links WHERE run_id IN ({marks}) UNION "
            f"SELECT parent_session FROM session_links WHERE run_id IN ({marks})", runs * 2)}
        if singles is not None and len(singles) == m and None not in singles:
            self._insert_singles(cols, cast(list[int], list(singles)), linked)
            return
        cols = _with_ids(cols, singles)
        ids = cols[1]
        # Column at a time, with C-level builtins: a drain writes hundreds of thousands.
        if pks.count(pks[0]) == m and type(pks[0]) is str:  # one process: ids share a prefix
            prefix = f"{pks[0]}-"
            numbers = list(map(itemgetter(slice(len(prefix), None)), ids))
            named = map(str.startswith, ids, repeat(prefix))
        else:
            numbers = [i.rpartition("-")[2] for i in ids]
            named = map(eq, ids, map("{}-{}".format, pks, numbers))
        fit = list(map(all, zip(named, map(str.isdecimal, numbers),
                                map(eq, cols[12], map(sub, cols[11], cols[10])))))
        for col in (cols[9], cols[13]):  # complete, one call
            if col.count(1) != m:
                fit = list(map(all, zip(fit, map(eq, col, repeat(1)))))
        if linked:  # linked sessions stay rows of the table (see lineage.LINKED)
            fit = list(map(all, zip(fit, map(not_, map(linked.__contains__, ids)))))
        ints = list(map(int, compress(numbers, fit))) if all(fit) else \
            [int(n) if ok else -1 for n, ok in zip(numbers, fit)]
        if list(map(str, ints)) != numbers:  # leading zeros: not the id the number gives
            fit = list(map(eq, map(str, ints), numbers))
        self._insert_fit(cols, ints, fit)

    def _insert_singles(self, cols: Sequence[Sequence[Any]], ints: list[int],
                        linked: set[str]) -> None:
        """Rows that are one-call sessions numbered ``ints`` by construction; linked ones
        stay rows of the table (see lineage.LINKED)."""
        fit = None
        if linked:
            cols = _with_ids(cols, ints)
            if not linked.isdisjoint(cols[1]):
                fit = list(map(not_, map(linked.__contains__, cols[1])))
        self._insert_fit(cols, ints, fit)

    def _insert_fit(self, cols: Sequence[Sequence[Any]], ints: list[int],
                    fit: list[bool] | None) -> None:
        """The rows ``fit`` marks (all where None) as one-call sessions numbered ``ints``,
        the others to the ``sessions`` table."""
        m = len(ints)
        if fit is not None and not all(fit):
            cols = _with_ids(cols, ints)
            self.insert_session_rows(zip(*(compress(c, map(not_, fit)) for c in cols)))
            cols = [list(compress(c, fit)) for c in cols]
            ints = list(compress(ints, fit))
            m = len(ints)
            if not m:
                return
        # A kind per distinct set of shared values, zipped from the columns that vary only.
        shared = [cols[_SESSION_ROW.index(c)] for c in _KIND]
        varying = [j for j, col in enumerate(shared) if col.count(col[0]) != m]
        keys: list[tuple[Any, ...]] = list(zip(*(shared[j] for j in varying))) \
            if varying else [()] * m
        kinds: dict[tuple[Any, ...], Any] = dict.fromkeys(keys)
        if len(kinds) > 64 and len(kinds) * 2 > m:
            # hardly shared (a name per session): the kinds would cost more than rows
            self.insert_session_rows(zip(*_with_ids(cols, ints)))
            return
        where = " AND ".join(f"{c} IS ?" for c in _KIND)
        first = dict(zip(keys, range(m)))
        for key in kinds:
            full = tuple(col[first[key]] for col in shared)
            row = self.db.execute(f"SELECT gid FROM session_kinds WHERE {where}",
                                  full).fetchone()
            kinds[key] = row[0] if row is not None else self.db.execute(
                f"INSERT INTO session_kinds({', '.join(_KIND)}) "
                f"VALUES({', '.join('?' * len(_KIND))})", full).lastrowid
        gids = [kinds[keys[0]]] * m if len(kinds) == 1 else list(map(kinds.__getitem__, keys))
        _insert_narrow(self.db, (cols[0], gids, ints, cols[10], cols[12], cols[16]))

    @staticmethod
    def session_dict(r: sqlite3.Row) -> dict[str, Any]:
        """A ``sessions`` row as readers see it (without the store's own bookkeeping)."""
        d = dict(r)
        for internal in ("sid", "fids", "raised"):  # row id and indexes of the store's own
            d.pop(internal, None)
        d["complete"] = bool(d["complete"])
        return d

    def session(self, session_id: str) -> SessionDict | None:
        row = self._session_row(session_id)
        return cast(SessionDict, lineage.with_descendants(self.db, [self.session_dict(row)], self._table)[0]
                    ) if row else None

    def session_graph(self, session_id: str) -> dict[str, Any] | None:
        """The session as the export contract's session graph (timestamps in unix ns), with
        the sessions of the child processes its calls started as subtrees."""
        return self._own_graph(session_id, grafted=True)

    def _own_graph(self, session_id: str, grafted: bool = False) -> dict[str, Any] | None:
        row = self._session_row(session_id)
        if row is None:
            return None
        # A reader's (its shapes' module loads json, and re): not at the sidecar's start.
        from .graphs import session_graph as build_session_graph

        info = self._process_info(row["pk"], row["run_id"])
        graph = build_session_graph(row, self.functions(row["run_id"]), info,
                                    self._call_rows(row, info), self.shape_text)
        if not grafted:
            return graph
        # The sessions of child processes started from its calls, as subtrees.
        return lineage.graft(graph, self.db, self._own_graph, table=self._table)

    def _process_info(self, pk: str, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT info FROM processes WHERE run_id=? AND pk=?",
                              (run_id, pk)).fetchone()
        return jsonline.loads(row[0]) if row and row[0] else {}

    def _call_rows(self, row: sqlite3.Row, info: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        ids = self.db.execute(
            "SELECT c.chunk_id, c.ids FROM session_chunks sc JOIN chunks c ON "
            "c.chunk_id=sc.chunk_id WHERE sc.sid=? ORDER BY sc.chunk_id", (row["sid"],)).fetchall()
        if not ids:
            return []
        if info is None:
            info = self._process_info(row["pk"], row["run_id"])
        chunks = [(kind, *self._chunk(chunk_id)) for chunk_id, kind in ids]
        return C.session_rows(chunks, C.session_number(row["session_id"]), C.ProcessMaps(info))

    def _chunk(self, chunk_id: int) -> tuple[dict[int, list[tuple[Any, ...]]], tuple[int, int]]:
        """A chunk decoded and grouped by session, through a small cache: sessions that
        share a frame are read one after the other (a session list, an export), and each
        must not decode the whole frame again. Chunk ids are never reused and a chunk only
        ever loses the rows of pruned sessions, so a cached chunk stays right for every
        session still linked to it."""
        hit = self._chunks.get(chunk_id)
        if hit is not None:
            self._chunks.move_to_end(chunk_id)
            return hit
        data = self.db.execute("SELECT data FROM chunks WHERE chunk_id=?",
                               (chunk_id,)).fetchone()
        hit = C.by_session(data[0]) if data else ({}, (0, 0))
        self._chunks[chunk_id] = hit
        if len(self._chunks) > _CHUNK_CACHE:
            self._chunks.popitem(last=False)
        return hit

    def session_calls(self, session_id: str) -> list[dict[str, Any]]:
        """The stored calls of one session in start order, each a dict with the fields of
        :data:`flowagent.store.chunks.STORE_FIELDS` (store ids, unix-ns times); empty when
        its tree was not kept."""
        row = self._session_row(session_id)
        if row is None:
            return []
        return [dict(zip(C.STORE_FIELDS, c)) for c in self._call_rows(row)]

    def stored_calls(self, run_id: str | None = None) -> dict[str, int]:
        """Calls held in the store's kept session trees: ``calls`` recorded ones and
        ``placeholders`` (calls a dead process left open, stored as ``incomplete``)."""
        where, args = ("WHERE s.run_id=?", [run_id]) if run_id else ("", [])
        join = f"JOIN sessions s ON s.sid=sc.sid {where}"
        if self._singles:  # each table's rows by their own keys (a join reads the view whole)
            kinds = "WHERE gid IN (SELECT gid FROM session_kinds WHERE run_id=?)" \
                if run_id else ""
            join = (f"WHERE sc.sid IN (SELECT sid FROM main.sessions s {where} UNION ALL "
                    f"SELECT sid FROM main.single_sessions {kinds})")
            args *= 2
        row = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN c.placeholders THEN 0 ELSE sc.calls END),0), "
            "COALESCE(SUM(CASE WHEN c.placeholders THEN sc.calls ELSE 0 END),0) "
            f"FROM session_chunks sc JOIN chunks c ON c.chunk_id=sc.chunk_id {join}",
            args).fetchone()
        return {"calls": row[0], "placeholders": row[1]}

    def iter_session_graphs(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Every kept session tree of a run, one at a time (bounded memory for exports)."""
        ids = [r[0] for r in self.db.execute(
            "SELECT session_id FROM sessions WHERE run_id=? AND tree_kept!=0 AND NOT "
            + lineage.LINKED.format(alias="sessions.", table=self._table)
            + " ORDER BY started_ns", (run_id,))]
        for sid in ids:
            g = self.session_graph(sid)
            if g is not None:
                yield g

    def aggregates(self, run_id: str) -> dict[str, Any]:
        """Raw merged-graph aggregates of one run (input of model.graph.merged_graph)."""
        fns = self.functions(run_id)
        nodes = [dict(r) for r in self.db.execute(
            "SELECT * FROM graph_nodes WHERE run_id=?", (run_id,))]
        edges = [dict(r) for r in self.db.execute(
            "SELECT * FROM graph_edges WHERE run_id=?", (run_id,))]
        shapes = [dict(r) for r in self.db.execute(
            "SELECT * FROM shape_counts WHERE run_id=?", (run_id,))]
        paths = [dict(r) for r in self.db.execute("SELECT * FROM paths WHERE run_id=?",
                                                   (run_id,))]
        for s in shapes:
            s["shape"] = self.shape_text(s["shape_sid"])
        total = self.db.execute(f"SELECT COUNT(*) FROM {self._table} WHERE run_id=? AND "
                                "complete=1", (run_id,)).fetchone()[0]
        if self._singles:  # all complete
            total += self.db.execute("SELECT COUNT(*) FROM single_sessions WHERE gid IN "
                                     "(SELECT gid FROM session_kinds WHERE run_id=?)",
                                     (run_id,)).fetchone()[0]
        return {"run_id": run_id, "functions": fns, "nodes": nodes, "edges": edges,
                "shapes": shapes, "paths": paths, "total_sessions": total}

    # -- runs (write) ----------------------------------------------------------------------
    def finish_run(self, run_id: str, end: RunEnd) -> None:
        args = (jsonline.dumps(list(end.argv)), end.cwd, end.backend, end.ended_ns, end.exit_code,
                end.status, run_id)
        sql = ("UPDATE runs SET argv=?, cwd=?, backend=?, ended_ns=?, exit_code=?, status=? "
               "WHERE run_id=?")
        if self.db.in_transaction:  # part of the writer's last write (the sidecar's)
            self.db.execute(sql, args)
            return
        try:
            with self.transaction():
                self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))

    def write_run_totals(self, run_id: str, totals: RunTotals) -> None:
        t = totals
        self.db.execute(
            "UPDATE runs SET sessions=?, calls=?, errors=?, incomplete_sessions=?, "
            "produced_events=?, dropped_events=?, dropped_batches=?, corrupt_frames=?, "
            "duplicate_frames=?, agent_errors=?, processes=?, sampled_out=?, hook_errors=?, "
            "hook_error=?, pruned_sessions=pruned_sessions+? WHERE run_id=?",
            (t.sessions, t.calls, t.errors, t.incomplete_sessions, t.produced_events,
             t.dropped_events, t.dropped_batches, t.corrupt_frames, t.duplicate_frames,
             t.agent_errors, t.processes, t.sampled_out, t.hook_errors, t.hook_error,
             t.pruned_sessions, run_id))

    def resolve_pending(self, run_id: str, still_running: bool) -> None:
        self.db.execute("UPDATE runs SET status=CASE WHEN ? THEN 'pending' WHEN "
                        "status='pending' THEN 'finished' ELSE status END WHERE run_id=?",
                        (bool(still_running), run_id))

    def write_otlp_totals(self, run_id: str, sessions: int, spans: int,
                          undelivered: int) -> None:
        self.db.execute("UPDATE runs SET otlp_sessions=?, otlp_spans=?, otlp_undelivered=? "
                        "WHERE run_id=?", (sessions, spans, undelivered, run_id))

    def write_profile_displaced(self, run_id: str, displacements: int, ns: int) -> None:
        self.db.execute("UPDATE runs SET profile_displacements=?, profile_displaced_ns=? "
                        "WHERE run_id=?", (displacements, ns, run_id))

    def write_hook_errors(self, run_id: str, errors: int, first_error: str | None) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET hook_errors=?, hook_error=? WHERE run_id=?",
                            (errors, first_error, run_id))

    def fleet(self) -> list[FleetEntry]:
        return [FleetEntry(r[0], r[1], r[2], r[3], r[4]) for r in self.db.execute(
            "SELECT service, host, COUNT(*), "
            "COALESCE(SUM(status='running' AND ended_ns IS NULL),0), MAX(started_ns) "
            "FROM runs GROUP BY service, host ORDER BY service, host")]

    # -- processes -------------------------------------------------------------------------
    def add_process(self, run_id: str, pk: str, pid: int, ppid: int, info: Any,
                    started_ns: int) -> None:
        self.db.execute("INSERT INTO processes(run_id, pk, pid, ppid, info, started_ns) "
                        "VALUES(?,?,?,?,?,?)",
                        (run_id, pk, pid, ppid, jsonline.dumps(info), started_ns))

    def process_state(self, run_id: str, pk: str) -> ProcessState | None:
        row = self.db.execute("SELECT last_seq, ring_tail, stored_events, duplicate_frames, "
                              "info FROM processes WHERE run_id=? AND pk=?",
                              (run_id, pk)).fetchone()
        if row is None:
            return None
        return ProcessState(row[0], row[1], row[2], row[3],
                            jsonline.loads(row[4]) if row[4] else {})

    def save_process(self, run_id: str, pk: str, progress: ProcessProgress) -> None:
        p = progress
        self.db.execute(
            "UPDATE processes SET last_seq=?, ring_tail=?, produced_events=?, dropped_events=?, "
            "dropped_batches=?, stored_events=?, duplicate_frames=?, corrupt_frames=?, "
            "agent_errors=?, closed=?, info=? WHERE run_id=? AND pk=?",
            (p.last_seq, p.ring_tail, p.produced_events, p.dropped_events, p.dropped_batches,
             p.stored_events, p.duplicate_frames, p.corrupt_frames, p.agent_errors, p.closed,
             jsonline.dumps(p.info), run_id, pk))

    def process_counters(self, run_id: str) -> list[ProcessCounters]:
        return [ProcessCounters(r[0], *(v or 0 for v in r[1:])) for r in self.db.execute(
            "SELECT pk, produced_events, dropped_events, dropped_batches, corrupt_frames, "
            "duplicate_frames, agent_errors, stored_events FROM processes WHERE run_id=?",
            (run_id,)).fetchall()]

    def add_samples(self, samples: Any) -> None:
        with self.transaction():
            self.db.executemany("INSERT INTO process_samples VALUES(?,?,?,?,?)",
                                [(s.run_id, s.pid, s.ts_ns, s.cpu_s, s.rss_bytes)
                                 for s in samples])

    def samples(self, run_id: str, pid: int) -> list[ProcessSample]:
        return [ProcessSample(run_id, pid, r[0], r[1], r[2]) for r in self.db.execute(
            "SELECT ts_ns, cpu_s, rss_bytes FROM process_samples WHERE run_id=? AND pid=? "
            "ORDER BY ts_ns", (run_id, pid))]

    # -- functions -------------------------------------------------------------------------
    def add_function(self, run_id: str, fn: FunctionDef) -> None:
        self.db.execute("INSERT INTO functions VALUES(?,?,?,?,?,?,?,?,?)",
                        (run_id, fn.fid, fn.name, fn.module, fn.qualname, fn.file, fn.line,
                         fn.kind, jsonline.dumps(list(fn.params))))

    # -- sessions (write) ------------------------------------------------------------------
    def open_session(self, session_id: str, run_id: str, root_fid: int, pid: int, pk: str,
                     thread: str, started_ns: int, rowid: int | None = None) -> int:
        if rowid is None and self._singles:  # numbered after the rows of both tables
            rowid = self.next_session_rowid()
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO {self._table}(sid, session_id, run_id, root_fid, pid, pk, "
            "thread, complete, started_ns) VALUES(?,?,?,?,?,?,?,0,?)",
            (rowid, session_id, run_id, root_fid, pid, pk, thread, started_ns))
        if cur.rowcount:
            return int(cur.lastrowid or 0)
        return int(self.db.execute(f"SELECT sid FROM {self._table} WHERE session_id=?",
                                   (session_id,)).fetchone()[0])

    def finish_session(self, rowid: int, end: SessionEnd) -> None:
        e = end
        self.db.execute(
            f"UPDATE {self._table} SET name=?, root_fid=?, thread=?, result=?, complete=?, "
            "started_ns=?, ended_ns=?, duration_ns=?, calls=?, errors=?, variant=?, "
            "tree_kept=?, fids=?, raised=? WHERE sid=?",
            (e.name, e.root_fid, e.thread, e.result, 1 if e.complete else 0, e.started_ns,
             e.ended_ns, e.ended_ns - e.started_ns, e.calls, e.errors, e.variant, e.tree_kept,
             f" {' '.join(map(str, e.fids))} ",
             jsonline.dumps([list(r) for r in e.raised]) if e.raised else None, rowid))

    def next_session_rowid(self) -> int:
        # The writer's own inside its transaction: BEGIN IMMEDIATE holds the write lock.
        if self._singles:  # each table's largest from its own end, not a scan of the view
            return int(self.db.execute(f"SELECT {_NEXT_SID}").fetchone()[0])
        return int(self.db.execute("SELECT COALESCE(MAX(sid), 0) + 1 FROM sessions"
                                   ).fetchone()[0])

    def insert_sessions(self, rows: Sequence[SessionRow]) -> None:
        # Sessions of one frame share their function lists and exceptions by group: each
        # distinct one is encoded once.
        fids_text: dict[tuple[int, ...], str] = {}
        raised_text: dict[tuple[tuple[int, int, int], ...], str | None] = {(): None}
        out = []
        for r in rows:
            e = r.end
            f = fids_text.get(e.fids)
            if f is None:
                f = fids_text[e.fids] = f" {' '.join(map(str, e.fids))} "
            x = raised_text.get(e.raised, False)
            if x is False:
                x = raised_text[e.raised] = jsonline.dumps([list(t) for t in e.raised])
            out.append((r.rowid, r.session_id, r.run_id, e.name, e.root_fid, r.pid, r.pk,
                        e.thread, e.result, 1 if e.complete else 0, e.started_ns, e.ended_ns,
                        e.ended_ns - e.started_ns, e.calls, e.errors, e.variant, e.tree_kept,
                        f, x))
        self.db.executemany(_INSERT_MAIN if self._singles else _INSERT_SESSIONS, out)

    def insert_session_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        # Whole rows in _SESSION_ROW order, already encoded: a writer that builds its rows
        # column by column (thousands per frame) makes no object per session.
        self.db.executemany(_INSERT_MAIN if self._singles else _INSERT_SESSIONS, rows)

    def open_sessions(self, run_id: str, pk: str) -> list[OpenSession]:
        return [OpenSession(r[0], r[1], r[2], r[3], r[4], r[5]) for r in self.db.execute(
            "SELECT sid, session_id, root_fid, started_ns, name, thread FROM sessions "
            "WHERE run_id=? AND pk=? AND complete=0 AND result IS NULL",
            (run_id, pk)).fetchall()]

    def session_chunk_data(self, rowid: int) -> Iterator[bytes]:
        for (data,) in self.db.execute(
                "SELECT c.data FROM session_chunks sc JOIN chunks c ON c.chunk_id=sc.chunk_id "
                "WHERE sc.sid=? ORDER BY sc.chunk_id", (rowid,)).fetchall():
            yield data

    def _kept(self, run_id: str, tree_kept: int, upto: int | None = None
              ) -> tuple[str, tuple[Any, ...]]:
        """SELECT of the row ids of a run's sessions kept for ``tree_kept`` (at most
        ``upto``), and its arguments: each table's own, through its index of kept rows (the
        view of both would be read whole)."""
        live = _live(tree_kept)
        cond, extra = (" AND sid<=?", (upto,)) if upto is not None else ("", ())
        sql = f"SELECT sid FROM {self._table} WHERE run_id=? AND tree_kept=?{live}{cond}"
        args = (run_id, tree_kept, *extra)
        if not self._singles:
            return sql, args
        return (f"{sql} UNION ALL SELECT x.sid FROM main.single_sessions x JOIN "
                "main.session_kinds k ON k.gid=x.gid WHERE k.run_id=? AND x.tree_kept=?"
                f"{live.replace('tree_kept', 'x.tree_kept')}{cond.replace('sid', 'x.sid')}",
                args * 2)

    def count_kept(self, run_id: str, tree_kept: int) -> int:
        sql, args = self._kept(run_id, tree_kept)
        return int(self.db.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchone()[0])

    def kept_beyond(self, run_id: str, tree_kept: int, keep: int) -> list[int]:
        sql, args = self._kept(run_id, tree_kept)
        return [r[0] for r in self.db.execute(f"{sql} ORDER BY 1 DESC LIMIT -1 OFFSET ?",
                                              (*args, keep)).fetchall()]

    def prune_trees(self, rowids: Any) -> None:
        from .api import PRUNED

        ids = list(rowids)
        with self.transaction():
            for chunk in self.unlink_chunks(ids):
                self.compact_chunk(chunk)
            self.db.executemany(f"UPDATE {self._table} SET tree_kept={PRUNED} WHERE sid=?",
                                [(i,) for i in ids])
            if self._singles:
                self.db.executemany(f"UPDATE single_sessions SET tree_kept={PRUNED} "
                                    "WHERE sid=?", [(i,) for i in ids])

    def prune_recent(self, run_id: str, tree_kept: int, keep: int) -> int:
        """:meth:`prune_trees` of :meth:`kept_beyond` in a few set-wise statements: the
        sessions to prune are those kept for ``tree_kept`` with a row id at most the
        cutoff's (sessions are never kept again once pruned, so that set only grows).
        Returns how many were pruned."""
        from .api import PRUNED

        with self.transaction():
            live = _live(tree_kept)
            sql, args = self._kept(run_id, tree_kept)
            row = self.db.execute(f"{sql} ORDER BY 1 DESC LIMIT 1 OFFSET ?",
                                  (*args, keep)).fetchone()
            if row is None:
                return 0
            beyond, args = self._kept(run_id, tree_kept, row[0])
            chunks = [r[0] for r in self.db.execute(
                f"SELECT DISTINCT chunk_id FROM session_chunks WHERE sid IN ({beyond})",
                args)]
            self.db.execute(f"DELETE FROM session_chunks WHERE sid IN ({beyond})", args)
            self.release_chunks(chunks)
            pruned = self.db.execute(
                f"UPDATE {self._table} SET tree_kept={PRUNED} WHERE run_id=? AND "
                f"tree_kept=?{live} AND sid<=?", (run_id, tree_kept, row[0])).rowcount
            if self._singles:
                pruned += self.db.execute(
                    f"UPDATE single_sessions SET tree_kept={PRUNED} WHERE tree_kept=?{live} "
                    "AND sid<=? AND gid IN (SELECT gid FROM session_kinds WHERE run_id=?)",
                    (tree_kept, row[0], run_id)).rowcount
            return pruned

    def release_chunks(self, chunk_ids: Iterable[int]) -> None:
        """Chunks some of whose sessions were pruned: deleted when no session links them any
        more, else compacted (:meth:`compact_chunk`), in chunk order."""
        shared = []
        for chunk in sorted(set(chunk_ids)):
            if self.db.execute("SELECT 1 FROM session_chunks WHERE chunk_id=? LIMIT 1",
                               (chunk,)).fetchone():
                shared.append(chunk)
            else:
                self.db.execute("DELETE FROM chunks WHERE chunk_id=?", (chunk,))
        for chunk in shared:
            self.compact_chunk(chunk)

    # -- aggregates ------------------------------------------------------------------------
    def node_stats(self, run_id: str) -> list[NodeStats]:
        from ..model import histogram as H

        return [NodeStats(r["fid"], r["calls"], r["errors"], r["partials"], r["total_ns"],
                          r["self_ns"], r["min_ns"], r["max_ns"], r["roots"], r["cpu_ns"] or 0,
                          H.decode(r["hist"]))
                for r in self.db.execute("SELECT * FROM graph_nodes WHERE run_id=?", (run_id,))]

    def edge_stats(self, run_id: str) -> list[EdgeStats]:
        return [EdgeStats(r["caller_fid"], r["callee_fid"], r["result"], r["count"],
                          r["total_ns"])
                for r in self.db.execute("SELECT * FROM graph_edges WHERE run_id=?", (run_id,))]

    def shape_counts(self, run_id: str, io: str | None = None) -> list[ShapeCount]:
        where, args = ("AND io=?", (run_id, io)) if io else ("", (run_id,))
        return [ShapeCount(r["fid"], r["io"], r["shape_sid"], r["count"], r["first_session"],
                           self.shape_text(r["shape_sid"]))
                for r in self.db.execute(f"SELECT * FROM shape_counts WHERE run_id=? {where}",
                                         args).fetchall()]

    def path_counts(self, run_id: str, limit: int | None = None) -> list[PathCount]:
        return [PathCount(r[0], r[1]) for r in self.db.execute(
            "SELECT path, count FROM paths WHERE run_id=? ORDER BY count DESC, path LIMIT ?",
            (run_id, -1 if limit is None else limit))]

    def variant_stats(self, run_id: str) -> list[VariantStats]:
        from ..model import histogram as H

        return [VariantStats(r["variant"], r["root_fid"], r["count"], r["errors"],
                             H.decode(r["hist"]), r["first_ns"],
                             tuple(jsonline.loads(r["examples"] or "[]")))
                for r in self.db.execute("SELECT * FROM variants WHERE run_id=? "
                                         "ORDER BY count DESC, first_ns", (run_id,)).fetchall()]

    def cluster_stats(self, run_id: str) -> list[ClusterStats]:
        return [ClusterStats(r["exc_sid"], r["fid"], r["path"], r["handled"], r["count"],
                             r["first_ns"], r["last_ns"], tuple(jsonline.loads(r["examples"] or "[]")))
                for r in self.db.execute("SELECT * FROM error_clusters WHERE run_id=? "
                                         "ORDER BY count DESC", (run_id,)).fetchall()]

    def load_aggregates(self, run_id: str) -> AggregateRows:
        return AggregateRows(tuple(self.node_stats(run_id)), tuple(self.edge_stats(run_id)),
                             tuple(ShapeCount(r["fid"], r["io"], r["shape_sid"], r["count"],
                                              r["first_session"]) for r in self.db.execute(
                                 "SELECT * FROM shape_counts WHERE run_id=?", (run_id,))),
                             tuple(self.path_counts(run_id)), tuple(self.variant_stats(run_id)),
                             tuple(self.cluster_stats(run_id)))

    def write_aggregates(self, run_id: str, rows: AggregateRows) -> None:
        a = rows
        from ..model import histogram as H

        db = self.db
        if a.nodes:
            db.executemany("INSERT OR REPLACE INTO graph_nodes VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                           [(run_id, n.fid, n.calls, n.errors, n.partials, n.total_ns,
                             n.self_ns, n.min_ns, n.max_ns, n.roots, n.cpu_ns, H.encode(n.hist))
                            for n in a.nodes])
        if a.edges:
            db.executemany("INSERT OR REPLACE INTO graph_edges VALUES(?,?,?,?,?,?)",
                           [(run_id, e.caller_fid, e.callee_fid, e.result, e.count, e.total_ns)
                            for e in a.edges])
        if a.shapes:
            db.executemany("INSERT OR REPLACE INTO shape_counts VALUES(?,?,?,?,?,?)",
                           [(run_id, s.fid, s.io, s.shape_sid, s.count, s.first_session)
                            for s in a.shapes])
        if a.paths:
            db.executemany("INSERT OR REPLACE INTO paths VALUES(?,?,?)",
                           [(run_id, p.path, p.count) for p in a.paths])
        if a.variants:
            db.executemany("INSERT OR REPLACE INTO variants VALUES(?,?,?,?,?,?,?,?)",
                           [(run_id, v.variant, v.root_fid, v.count, v.errors, H.encode(v.hist),
                             v.first_ns, jsonline.dumps(list(v.examples))) for v in a.variants])
        if a.clusters:
            db.executemany("INSERT OR REPLACE INTO error_clusters VALUES(?,?,?,?,?,?,?,?,?)",
                           [(run_id, c.exc_sid, c.fid, c.path, c.handled, c.count, c.first_ns,
                             c.last_ns, jsonline.dumps(list(c.examples))) for c in a.clusters])

    def aggregate_version(self, run_id: str) -> AggregateVersion:
        n, calls, errors = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(calls),0), COALESCE(SUM(errors),0) FROM graph_nodes "
            "WHERE run_id=?", (run_id,)).fetchone()
        samples = self.db.execute("SELECT COUNT(*) FROM process_samples WHERE run_id=?",
                                  (run_id,)).fetchone()[0]
        return AggregateVersion(n, calls, errors, samples)

    # -- sessions (read) -------------------------------------------------------------------
    def count_matching(self, f: SessionFilter, cap: int = 10_000) -> tuple[int, bool]:
        where, args = session_where(f.run_id, f.result, f.root, f.min_duration_ns,
                                    service=f.service, host=f.host, table=self._table)
        if f.search:
            where += (" AND EXISTS (SELECT 1 FROM functions f WHERE f.run_id=sessions.run_id "
                      "AND f.name LIKE ? AND instr(sessions.fids, ' ' || f.fid || ' ') > 0)")
            args.append(f"%{f.search}%")
        n = self.db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE {where} LIMIT ?)",
            (*args, cap + 1)).fetchone()[0]
        return (min(n, cap), n > cap)

    def session_starts(self, session_ids: Any) -> dict[str, int]:
        wanted = sorted(set(session_ids))
        firsts: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            firsts.update(self.db.execute(
                f"SELECT session_id, started_ns FROM {self._table} WHERE session_id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall())
        if self._singles:
            rest: dict[int, set[str]] = {}
            for session_id in wanted:
                if session_id not in firsts:
                    pk, number = _split_id(session_id)
                    if pk is not None:
                        rest.setdefault(number, set()).add(pk)
            numbers = sorted(rest)
            for i in range(0, len(numbers), 500):
                chunk = numbers[i:i + 500]
                for pk, number, started in self.db.execute(
                        "SELECT k.pk, x.ses, x.started_ns FROM main.single_sessions x JOIN "
                        "main.session_kinds k ON k.gid=x.gid WHERE x.ses IN "
                        f"({','.join('?' * len(chunk))})", chunk):
                    if pk in rest[number]:
                        firsts[f"{pk}-{number}"] = started
        return firsts

    def session_totals(self, run_id: str) -> SessionTotals:
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(calls),0), COALESCE(SUM(errors),0), "
            "COALESCE(SUM(result IS NULL),0), COALESCE(SUM(complete=0 AND result IS NOT NULL),0) "
            f"FROM {self._table} WHERE run_id=?", (run_id,)).fetchone()
        if self._singles:
            # One-call sessions (complete, one call each) counted from their narrow rows
            # joined to their kinds: the view would build each row's text first (the end of
            # a run of hundreds of thousands spent longer on that than on storing them).
            single = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(k.errors),0), COALESCE(SUM(k.result IS NULL),0) "
                "FROM main.single_sessions x JOIN main.session_kinds k ON k.gid=x.gid "
                "WHERE k.run_id=?", (run_id,)).fetchone()
            row = (row[0] + single[0], row[1] + single[0], row[2] + single[1],
                   row[3] + single[2], row[4])
        # The sessions of child processes are parts of others, not counted as sessions
        # (lineage.LINKED): counted from the links, not with a lookup per session row (a
        # run can hold hundreds of thousands).
        linked = self.db.execute(
            f"SELECT COUNT(*) FROM session_links l JOIN {self._table} s ON "
            f"s.session_id=l.session_id JOIN {self._table} p ON p.session_id=l.parent_session "
            "WHERE s.run_id=?",
            (run_id,)).fetchone()[0]
        return SessionTotals(row[0] - linked, row[1], row[2], row[3], row[4])

    def parent_session(self, session_id: str) -> str | None:
        return lineage.parent_of(self.db, session_id, self._table)

    def add_session_link(self, run_id: str, session_id: str, parent_session: str,
                         parent_call: int, parent_function: str, parent_pid: int) -> None:
        self._unpack_single(session_id)  # linked sessions are rows of the table itself
        self._unpack_single(parent_session)
        lineage.add(self.db, run_id, session_id, parent_session, parent_call, parent_function,
                    parent_pid)

    def session_results(self, run_id: str) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT COALESCE(result, 'open'), COUNT(*) FROM sessions WHERE run_id=? "
            "GROUP BY 1", (run_id,))}

    def variant_results(self, run_id: str) -> list[VariantResult]:
        return [VariantResult(r[0], r[1], r[2]) for r in self.db.execute(
            "SELECT variant, result, COUNT(*) FROM sessions WHERE run_id=? "
            "AND variant IS NOT NULL AND variant<>'' AND result IS NOT NULL AND NOT "
            + lineage.LINKED.format(alias="sessions.", table=self._table)
            + " GROUP BY variant, result",
            (run_id,))]

    def session_roots(self, run_id: str, limit: int = 200) -> list[RootCount]:
        """Root functions and request routes of a run's sessions, most frequent first: read
        from the merged graph's per-function ``roots`` counts (finished sessions), one small
        indexed read instead of a scan of every session."""
        return [RootCount(r[0], r[1]) for r in self.db.execute(
            "SELECT f.name, g.roots FROM graph_nodes g "
            "JOIN functions f ON f.run_id=g.run_id AND f.fid=g.fid "
            "WHERE g.run_id=? AND g.roots>0 ORDER BY g.roots DESC, f.name LIMIT ?",
            (run_id, limit))]

    def exception_types(self, run_id: str, limit: int = 200) -> list[ExceptionCount]:
        """Which exception types each function raised over the kept trees of a run, from
        each failed session's ``raised`` summary (no call record is decoded)."""
        return [ExceptionCount(r[0], r[1], r[2]) for r in self.db.execute(
            "SELECT f.name AS function_name, sh.text AS exception_type, "
            "SUM(json_extract(j.value, '$[2]')) AS count "
            "FROM sessions s, json_each(s.raised) j "
            "JOIN functions f ON f.run_id=s.run_id AND f.fid=json_extract(j.value, '$[0]') "
            "JOIN shapes sh ON sh.sid=json_extract(j.value, '$[1]') "
            "WHERE s.run_id=? AND s.errors>0 AND s.tree_kept!=0 AND s.raised IS NOT NULL "
            "GROUP BY f.name, sh.text ORDER BY count DESC, f.name LIMIT ?", (run_id, limit))]

    def function_sessions(self, run_id: str, function_name: str,
                          limit: int = 20) -> list[dict[str, Any]]:
        """Recent kept sessions whose tree calls ``function_name`` (newest first); stops at
        ``limit`` matches (each session row lists its functions)."""
        fid = self.db.execute("SELECT fid FROM functions WHERE run_id=? AND name=?",
                              (run_id, function_name)).fetchone()
        if fid is None:
            return []
        rows = self.db.execute(
            "SELECT s.* FROM sessions s WHERE s.run_id=? AND s.tree_kept>0 AND "
            "instr(s.fids, ' ' || ? || ' ') > 0 ORDER BY s.started_ns DESC LIMIT ?",
            (run_id, fid[0], limit)).fetchall()
        return [self.session_dict(r) for r in rows]

    def root_sessions(self, run_id: str, root_name: str, limit: int) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT s.session_id FROM sessions s JOIN functions f ON f.run_id=s.run_id AND "
            "f.fid=s.root_fid WHERE s.run_id=? AND f.name=? AND s.tree_kept>0 "
            "ORDER BY s.started_ns DESC LIMIT ?", (run_id, root_name, limit)).fetchall()]

    def spool_backlog(self) -> list[Any]:
        return []  # a SQLite store is written directly: nothing waits in a spool

    # -- fleet control (flowagent.store.control) -------------------------------------------
    def service_control(self, service: str) -> Any:
        from . import control

        return control.read(self.db, service)

    def service_controls(self) -> list[Any]:
        from . import control

        return control.read_all(self.db)

    def set_service_control(self, service: str, *, paused: bool | None = None,
                            sample_rate: float | None = None,
                            include: Sequence[str] | None = None,
                            exclude: Sequence[str] | None = None) -> Any:
        from . import control

        with self.transaction():
            self.db.execute(control.SCHEMA)
            control.write(self.db, service, control.merged(
                control.read(self.db, service), service, paused, sample_rate, include,
                exclude))
        return control.read(self.db, service)
