"""The rows of one-call sessions and their chunk links are inserted many to a statement
(``_insert_narrow``, ``_insert_links``): every count of rows, below, at and across the
statement's size, stores exactly the rows given, in order, as a statement per row does
(links already stored or repeated are ignored one by one); and a store fed through the
sidecar's ``Held`` rows reads every session of a frame longer than one statement."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowagent.sidecar.singles import Held
from flowagent.store.api import PRUNED, RECENT
from flowagent.store.sqlite import _MANY_ROWS, SQLiteStore, _insert_links, _insert_narrow

RUN = "run-1"


def _cols(n: int) -> list[Any]:
    return [range(10, 10 + n), [1 + i % 3 for i in range(n)], [5 + i for i in range(n)],
            [1_765_000_000_000_000_000 + 2_000 * i for i in range(n)],
            [700 + i % 50 for i in range(n)], [PRUNED if i % 7 else RECENT for i in range(n)]]


@pytest.mark.parametrize("n", [0, 1, _MANY_ROWS - 1, _MANY_ROWS, _MANY_ROWS + 1,
                               2 * _MANY_ROWS, 3 * _MANY_ROWS + 17])
def test_many_rows_a_statement_store_what_one_row_a_statement_does(tmp_path: Path,
                                                                   n: int) -> None:
    got = []
    for many in (True, False):
        db = sqlite3.connect(str(tmp_path / f"{many}.db"), isolation_level=None)
        db.execute("CREATE TABLE single_sessions(sid INTEGER PRIMARY KEY, gid INTEGER, "
                   "ses INTEGER, started_ns INTEGER, duration_ns INTEGER, tree_kept INTEGER)")
        cols = _cols(n)
        if many:
            _insert_narrow(db, cols)
        else:
            db.executemany("INSERT INTO single_sessions VALUES(?,?,?,?,?,?)", zip(*cols))
        got.append(db.execute("SELECT * FROM single_sessions ORDER BY rowid").fetchall())
        db.close()
    assert got[0] == got[1] == [tuple(r) for r in zip(*_cols(n))]


def test_a_duplicate_row_id_fails_the_whole_insert(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "d.db"), isolation_level=None)
    db.execute("CREATE TABLE single_sessions(sid INTEGER PRIMARY KEY, gid INTEGER, "
               "ses INTEGER, started_ns INTEGER, duration_ns INTEGER, tree_kept INTEGER)")
    cols = _cols(2 * _MANY_ROWS)
    cols[0] = [*range(_MANY_ROWS), *range(_MANY_ROWS - 1, 2 * _MANY_ROWS - 1)]
    db.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError):
        _insert_narrow(db, cols)
    db.execute("ROLLBACK")
    assert db.execute("SELECT COUNT(*) FROM single_sessions").fetchone()[0] == 0


def test_held_frame_longer_than_a_statement_reads_whole(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    store.create_run(RUN, 1, None, None)
    n = 2 * _MANY_ROWS + 5
    held = Held()
    sid = held.next_sid(store)
    rows = [(sid + i, None, RUN, "m:f", 1, 7, "p", "Main", "success", 1, 1000 + 3 * i,
             1010 + 3 * i, 10, 1, 0, "v", RECENT, " 1 ", None) for i in range(n)]
    cols: list[Any] = [list(c) for c in zip(*rows)]
    cols[1] = None
    chunk = store.add_chunk(RUN, "p", 0, n, b"")
    held.add_columns(cols, chunk, list(range(1, n + 1)))
    with store.transaction():
        held.flush(store, 10 * n)
    assert store.count_sessions(RUN) == n
    assert store.db.execute("SELECT COUNT(*) FROM main.sessions").fetchone()[0] == 0
    for i in (1, _MANY_ROWS, _MANY_ROWS + 1, n):
        s = store.session(f"p-{i}")
        assert s is not None and s["started_ns"] == 1000 + 3 * (i - 1)
        assert s["ended_ns"] == 1010 + 3 * (i - 1) and s["duration_ns"] == 10
    assert store.session(f"p-{n + 1}") is None
    store.close()


@pytest.mark.parametrize("n", [1, _MANY_ROWS, 2 * _MANY_ROWS + 3])
def test_links_many_to_a_statement_store_what_one_a_statement_does(tmp_path: Path,
                                                                    n: int) -> None:
    """Links already stored and links repeated among the new ones are ignored one by one,
    as a statement per link ignores them."""
    links = [(i // 2, 1 + i % 2, i) for i in range(n)]
    links += links[: n // 3]  # repeated within the rows
    got = []
    for many in (True, False):
        store = SQLiteStore(str(tmp_path / f"{many}.db"))
        store.db.execute("INSERT INTO session_chunks VALUES(0, 1, 99)")  # stored before
        if many:
            store.link_chunks(iter(links))
        else:
            store.db.executemany("INSERT OR IGNORE INTO session_chunks VALUES(?,?,?)", links)
        got.append(store.db.execute("SELECT * FROM session_chunks ORDER BY sid, chunk_id")
                   .fetchall())
        store.close()
    assert got[0] == got[1]
    assert len(got[0]) == len(set((s, c) for s, c, _n in links) | {(0, 1)})


def test_a_link_of_another_width_is_refused_as_before(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "w.db"))
    db = store.db
    db.execute("BEGIN")
    with pytest.raises(sqlite3.ProgrammingError):
        _insert_links(db, [(1, 2, 3)] * (_MANY_ROWS - 1) + [(1, 2)] + [(3, 4, 5)] * 300)
    db.execute("ROLLBACK")
    store.close()
