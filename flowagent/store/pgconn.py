"""A psycopg 3 connection that speaks the sqlite3 dialect the store's queries are written in.

The store's portable queries use ``?`` placeholders and read rows by index or by column name
(``sqlite3.Row``); :class:`PgDB` runs the same text on PostgreSQL (``?`` becomes ``%s``
outside string literals, rows are :class:`Row`), so each query has one home and only the
statements whose SQL differs are written twice. psycopg is imported here, never on the
program side.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable, Iterator, Sequence, cast

from ..errors import StoreError
from . import pgschema

try:
    import psycopg
except ImportError:  # pragma: no cover - the postgres extra is not installed
    psycopg = None  # type: ignore[assignment]

CONNECT_TIMEOUT_S = 5


def require_psycopg() -> Any:
    if psycopg is None:
        raise StoreError("a postgresql:// store needs psycopg: pip install 'flowagent[postgres]'")
    return psycopg


class Row(tuple[Any, ...]):
    """A result row readable as ``r[0]``, ``r["name"]`` and ``dict(r)``, like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


_ROW_CLASSES: dict[tuple[str, ...], type[Row]] = {}


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    names = tuple(c.name for c in desc)
    cls = _ROW_CLASSES.get(names)
    if cls is None:
        cls = type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in
                                                                enumerate(names)}})
        _ROW_CLASSES[names] = cls
    return cls


_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?|%|\bDESC\b|\bLIMIT -1\b")
_TRANSLATED: dict[str, str] = {}


def _alias_subqueries(sql: str) -> str:
    """PostgreSQL (before 16) wants a name for every subquery in FROM: ``FROM (SELECT ...)``
    gets ``AS sub``."""
    out, pos = [], 0
    while True:
        start = sql.find("FROM (SELECT", pos)
        if start < 0:
            out.append(sql[pos:])
            return "".join(out)
        depth, i = 0, start + 5
        while i < len(sql):
            if sql[i] == "(":
                depth += 1
            elif sql[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append(sql[pos:i + 1])
        if not re.match(r"\s*(AS\b|\w)", sql[i + 1:]):
            out.append(" AS sub")
        pos = i + 1


def translate(sql: str) -> str:
    """The SQLite dialect of the store's portable queries → PostgreSQL's, outside string
    literals: ``?`` → ``%s`` (``LIMIT ?`` takes -1 as "no limit", as SQLite does), ``%`` →
    ``%%``, ``DESC`` → ``DESC NULLS LAST`` (SQLite sorts NULL lowest), ``LIMIT -1`` →
    ``LIMIT ALL``, and subqueries in FROM get a name. Cached per text."""
    out = _TRANSLATED.get(sql)
    if out is None:
        def sub(m: re.Match[str]) -> str:
            tok = m.group(0)
            if tok == "?":
                return "%s"
            if tok == "%":
                return "%%"
            if tok == "DESC":
                return "DESC NULLS LAST"
            if tok == "LIMIT -1":
                return "LIMIT ALL"
            return tok.replace("%", "%%")
        out = _LITERAL_OR_MARK.sub(sub, _alias_subqueries(sql))
        out = out.replace("LIMIT %s", "LIMIT NULLIF(%s, -1)")
        if len(_TRANSLATED) < 4096:
            _TRANSLATED[sql] = out
    return out


class Cursor:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return cast(int, self._cur.rowcount)

    @property
    def description(self) -> Any:
        """As sqlite3's: one entry per column, its name first (None: no result rows)."""
        return self._cur.description


class PgDB:
    """One autocommit connection (reads) with sqlite3's ``execute`` shape; thread-safe."""

    def __init__(self, url: str, *, autocommit: bool = True) -> None:
        pg = require_psycopg()
        self.url = url
        try:
            self.conn = pg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S,
                                   row_factory=_row_factory)
        except pg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store {redact(url)}: "
                             f"{one_line(exc)}; check that the server runs and the URL "
                             "(host, port, user, database) is right") from None
        self._lock = threading.RLock()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        with self._lock:
            cur = self.conn.cursor()
            cur.execute(translate(sql), tuple(args))
            return Cursor(cur)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            rows = list(rows)
            if rows:
                self.conn.cursor().executemany(translate(sql), rows)

    def close(self) -> None:
        self.conn.close()


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def redact(url: str) -> str:
    """The URL without its password (it is printed in errors and summaries)."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


# -- schema ---------------------------------------------------------------------------------
# Concurrent sidecars create the schema and partitions at the same time: each creation runs
# under a transaction-scoped advisory lock, so two never race on the same catalog rows.
_SCHEMA_LOCK = 0x666C6F77  # "flow"

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION instr(text, text) RETURNS integer
  LANGUAGE sql IMMUTABLE AS 'SELECT strpos($1, $2)';
"""


def ensure_schema(conn: Any, readonly: bool = False) -> None:
    """Create the tables (idempotent) and check the data format; ``conn`` in a transaction.
    A reader of an existing store only checks (it may lack the right to create)."""
    from .sqlite import DATA_FORMAT

    wanted = f"{DATA_FORMAT}.pg{pgschema.SCHEMA_VERSION}"

    def check() -> bool:
        if not conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:
            return False
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and row[0] != wanted:
            raise StoreError(
                f"the PostgreSQL store was written by a different flowagent version (data "
                f"format {row[0]}, this one writes {wanted}); use another database")
        return True

    if readonly and check():
        return
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
    check()
    conn.execute(pgschema.SCHEMA)
    # Columns the SQLite layout gained after its tables shipped: the same here.
    from .sqlite import _ADDED_COLUMNS

    for table, column, decl in _ADDED_COLUMNS:  # ALTER only when missing: it locks the table
        ensure_columns(conn, table, {column: decl})
    conn.execute(_FUNCTIONS)
    conn.execute("INSERT INTO meta VALUES('schema_version', %s) ON CONFLICT DO NOTHING",
                 (wanted,))


def ensure_columns(conn: Any, table: str, columns: dict[str, str]) -> None:
    """Add the SQLite columns (name → declared type) PostgreSQL's table lacks."""
    have = {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name=%s AND "
        "table_schema=current_schema()", (table,))}
    for name, decl in columns.items():
        if name not in have:
            conn.execute(f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{name}" '
                         f"{pgschema.pg_type(decl)}")
            have.add(name)


def ensure_partitions(conn: Any, run_id: str) -> None:
    """The run's partitions of the big tables (one committed creation per run)."""
    for table in pgschema.PARTITIONED:
        name = pgschema.partition_name(table, run_id)
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]:
            continue
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK + 1,))
        quoted = run_id.replace("'", "''")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                     f"FOR VALUES IN ('{quoted}')")


def drop_partitions(conn: Any, run_id: str) -> None:
    for table in pgschema.PARTITIONED:
        conn.execute(f"DROP TABLE IF EXISTS {pgschema.partition_name(table, run_id)}")
