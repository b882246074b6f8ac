"""The index retention walks holds kept sessions only: a session written or later marked
pruned leaves no entry in it, the retention queries use it, and a store made with the
earlier full index loses that one when a writer opens it."""

from __future__ import annotations

import sqlite3

from flowagent.store.api import EXEMPLAR, FAILED, PRUNED, RECENT, SessionEnd
from flowagent.store.sqlite import SQLiteStore

RUN = "r"


def _sessions(store: SQLiteStore, kinds: list[int]) -> None:
    for n, kept in enumerate(kinds, 1):
        rowid = store.open_session(f"p-{n}", RUN, 1, 7, "p", "1", n * 1000)
        store.finish_session(rowid, SessionEnd("m:f", 1, "MainThread", "success", True,
                                               n * 1000, n * 1000 + 5, 1, 0, "v", kept,
                                               (1,), ()))


def _index_entries(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM main.sessions INDEXED BY sessions_kept_live "
                      "WHERE run_id=? AND tree_kept!=0", (RUN,)).fetchone()[0]


def test_pruned_sessions_are_not_in_the_kept_index_and_queries_use_it(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    store.create_run(RUN, 1, None, None)
    _sessions(store, [PRUNED, RECENT, RECENT, FAILED, EXEMPLAR, RECENT, PRUNED])
    db = store.db
    # a partial index's size is its entries: one per kept session
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 7
    assert _index_entries(db) == 5
    assert store.count_kept(RUN, RECENT) == 3
    assert store.count_kept(RUN, FAILED) == 1
    assert store.count_kept(RUN, PRUNED) == 2  # not through the index, still right
    assert store.kept_beyond(RUN, RECENT, 1) == [3, 2]
    assert store.prune_recent(RUN, RECENT, 1) == 2
    assert store.count_kept(RUN, PRUNED) == 4 and _index_entries(db) == 3
    for sql in ("SELECT sid FROM main.sessions WHERE run_id=? AND tree_kept=1 AND tree_kept!=0 "
                "ORDER BY sid DESC LIMIT 1 OFFSET ?",
                "SELECT COUNT(*) FROM main.sessions WHERE run_id=? AND tree_kept=2 AND tree_kept!=0"
                " AND ?"):
        plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, (RUN, 1)))
        assert "sessions_kept_live (run_id=? AND tree_kept=?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    store.close()


def test_the_earlier_full_index_is_dropped_when_a_writer_opens_the_store(tmp_path):
    path = str(tmp_path / "s.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("CREATE INDEX sessions_kept ON sessions(run_id, tree_kept, sid)")
    db.commit()
    db.close()
    SQLiteStore(path, readonly=True).close()  # a reader changes nothing
    names = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "sessions_kept" in names
    SQLiteStore(path).close()
    names = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "sessions_kept" not in names and "sessions_kept_live" in names
