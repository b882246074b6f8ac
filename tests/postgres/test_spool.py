"""The spool and its forwarder against a real PostgreSQL server (tests/pgserver.py).

Rows are written into the spool the way the sidecar writes them (the SQLite store's tables),
and read back from the server through the PostgreSQL store.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from pgserver import PgServer

psycopg = pytest.importorskip("psycopg")

from flowagent.store import chunks as C  # noqa: E402
from flowagent.store import pgschema  # noqa: E402
from flowagent.store.postgres import PostgresStore, SpoolStore  # noqa: E402


def _write_run(store: SpoolStore, run_id: str, sessions: int, *, shape_prefix: str = "s"
               ) -> None:
    """A run with ``sessions`` finished sessions of one call each, written like the sidecar
    writes them (one transaction)."""
    pk = "p" + run_id.replace("-", "")
    with store.transaction():
        db = store.db
        db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES(?,?,'running')",
                   (run_id, 1000))
        db.execute("INSERT INTO processes(run_id, pk, pid, ppid, info, started_ns) "
                   "VALUES(?,?,?,?,?,?)", (run_id, pk, 10, 1, "{}", 1000))
        db.execute("INSERT INTO functions VALUES(?,?,?,?,?,?,?,?,?)",
                   (run_id, 1, "app:main", "app", "main", "app.py", 1, "function", "[]"))
        out = store.shape_id(f"{shape_prefix}-list[int]")
        for i in range(sessions):
            sid = db.execute(
                "INSERT INTO sessions(session_id, run_id, name, root_fid, pid, pk, thread, "
                "result, complete, started_ns, ended_ns, duration_ns, calls, variant, fids) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (f"{pk}-{i + 1}", run_id, "app:main", 1, 10, pk, "MainThread", "success", 1,
                 1000 + i, 2000 + i, 1000, 1, "v1", " 1 ")).lastrowid
            row = (1, 0, i + 1, 1, 0, 0, out, 0, 0, 1000 + i, 2000 + i, 0, 0)
            chunk = store.add_chunk(run_id, pk, C.STORE, 1, C.encode([row]))
            store.link_chunks([(sid, chunk, 1)])
        db.execute("INSERT OR REPLACE INTO graph_nodes VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                   (run_id, 1, sessions, 0, 0, 1000 * sessions, 1000 * sessions, 1000, 1000,
                    sessions, 0, None))
        db.execute("INSERT OR REPLACE INTO paths VALUES(?,?,?)", (run_id, "1" * 5000,
                                                                    sessions))
        db.execute("UPDATE runs SET status='finished', ended_ns=5000, sessions=? "
                   "WHERE run_id=?", (sessions, run_id))


def _table(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def _snapshot(url: str) -> dict[str, list[tuple]]:
    return {t: sorted(map(repr, _table(url, f"SELECT * FROM {t}")))  # type: ignore[misc]
            for t in pgschema.KEYS}


def test_forwarded_rows_read_back_like_the_spool(pg_url: str, tmp_path: Path) -> None:
    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 30)
    assert store.waiting() > 0
    assert store.forwarder.drain(60) == 0
    pg = PostgresStore(pg_url)
    assert pg.runs()[0]["status"] == "finished"
    assert pg.count_sessions("run-a") == 30
    assert pg.stored_calls("run-a") == store.stored_calls("run-a") == {
        "calls": 30, "placeholders": 0}
    for s in store.sessions("run-a", limit=100):
        assert pg.session_graph(s["session_id"]) == store.session_graph(s["session_id"])
    assert pg.sessions("run-a", limit=100) == store.sessions("run-a", limit=100)
    assert pg.aggregates("run-a")["paths"] == store.aggregates("run-a")["paths"]
    pg.close()
    store.close()


def test_session_and_trace_links_reach_the_server(pg_url: str, tmp_path: Path) -> None:
    """A child process's session linked under a call, and the W3C trace links of a run, read
    the same from the server: the child is part of its parent's session there too."""
    from flowagent.store import traces

    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 3)
    with store.transaction():
        store.add_session_link("run-a", "pruna-2", "pruna-1", 1, "app:main", 10)
        traces.add_entries(store, "run-a", "pruna", [
            [1, traces.JOINED, "t" * 32, "a" * 16, 1], [3, traces.SENT, "t" * 32, "b" * 16, 1]])
    assert store.forwarder.drain(60) == 0
    pg = PostgresStore(pg_url)
    assert pg.parent_session("pruna-2") == store.parent_session("pruna-2") == "pruna-1"
    assert pg.count_sessions("run-a") == store.count_sessions("run-a") == 2
    assert pg.session_totals("run-a") == store.session_totals("run-a")
    assert pg.session_totals("run-a").sessions == 2
    assert pg.sessions("run-a") == store.sessions("run-a")
    assert pg.session_graph("pruna-1") == store.session_graph("pruna-1")
    assert traces.run_links(pg, "run-a") == traces.run_links(store, "run-a")
    assert [len(x) for x in traces.run_links(pg, "run-a")] == [1, 1]
    pg.delete_run("run-a")  # the server's retention
    assert _table(pg_url, "SELECT * FROM session_links") == []
    assert _table(pg_url, "SELECT * FROM trace_spans") == []
    pg.close()
    store.close()


def test_a_batch_forwarded_twice_is_stored_once(pg_url: str, tmp_path: Path) -> None:
    """A forwarder that dies after the server committed and before the spool forgot the
    batch sends it again on restart: the server's rows are the same."""
    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 20)
    log = store.db.execute("SELECT * FROM spool_log").fetchall()
    assert store.forwarder.drain(60) == 0
    once = _snapshot(pg_url)
    store.db.executemany("INSERT INTO spool_log VALUES(?,?,?,?,?)", [tuple(r) for r in log])
    assert store.waiting() == len(log)
    assert store.forwarder.drain(60) == 0
    assert _snapshot(pg_url) == once
    assert len(_table(pg_url, "SELECT * FROM sessions")) == 20
    store.close()


def test_unreachable_server_keeps_changes_in_the_spool(pg_server: PgServer, tmp_path: Path
                                                       ) -> None:
    url = pg_server.create_database()
    pg_server.stop()
    try:
        store = SpoolStore(url, str(tmp_path))  # the forwarder thread retries on its own
        _write_run(store, "run-a", 10)
        waiting = store.waiting()
        assert waiting > 0
        assert store.forwarder.drain(1) == waiting  # nothing moves while the server is down
        assert "waiting" in store.forward_status()
        assert store.forwarder.last_error
    finally:
        pg_server.start()
    assert store.forwarder.drain(60) == 0
    assert store.forward_status().startswith("all changes forwarded")
    assert PostgresStore(url).count_sessions("run-a") == 10
    store.close()


def test_pruned_trees_and_deleted_runs_reach_the_server(pg_url: str, tmp_path: Path) -> None:
    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 10)
    _write_run(store, "run-b", 5)
    assert store.forwarder.drain(60) == 0
    with store.transaction():  # retention drops the trees of 4 sessions of run-a
        sids = [r[0] for r in store.db.execute(
            "SELECT sid FROM sessions WHERE run_id='run-a' ORDER BY sid LIMIT 4")]
        store.unlink_chunks(sids)
        store.db.executemany("UPDATE sessions SET tree_kept=0 WHERE sid=?",
                             [(s,) for s in sids])
    assert store.forwarder.drain(60) == 0
    pg = PostgresStore(pg_url)
    assert pg.stored_calls("run-a") == {"calls": 6, "placeholders": 0}
    assert pg.stored_calls("run-b") == {"calls": 5, "placeholders": 0}
    # Retention on the server drops whole partitions.
    partitions = ("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid "
                  "WHERE c.relkind='r'")
    assert _table(pg_url, partitions) == [(6,)]  # sessions, chunks, session_chunks per run
    pg.delete_run("run-b")
    assert _table(pg_url, partitions) == [(3,)]
    assert [r["run_id"] for r in pg.runs()] == ["run-a"]
    assert pg.count_sessions() == 10
    pg.close()
    store.close()


def test_many_spools_write_into_one_server_at_once(pg_url: str, tmp_path: Path) -> None:
    """Four sidecars (four data directories) forward concurrently; shared shapes are
    interned once, every run arrives whole."""
    stores = [SpoolStore(pg_url, str(tmp_path / f"host{i}"), forward=False) for i in range(4)]
    for i, store in enumerate(stores):
        _write_run(store, f"run-{i}", 25, shape_prefix="shared")
    errors: list[BaseException] = []

    def drain(store: SpoolStore) -> None:
        try:
            assert store.forwarder.drain(120) == 0
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors
    pg = PostgresStore(pg_url)
    assert sorted(r["run_id"] for r in pg.runs()) == [f"run-{i}" for i in range(4)]
    assert pg.count_sessions() == 100
    assert _table(pg_url, "SELECT count(*) FROM shapes") == [(1,)]
    pg.close()
    for store in stores:
        store.close()


def test_spool_is_an_ordinary_sqlite_store(pg_url: str, tmp_path: Path) -> None:
    """What waits in the spool stays readable locally (and by any SQLite tool)."""
    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 3)
    store.final_forward_s = 0
    store.close()
    db = sqlite3.connect(tmp_path / "pg-spool.db")
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone() == (3,)


def test_local_size_limit_frees_the_spool_not_the_server(pg_url: str, tmp_path: Path) -> None:
    """A data directory's size limit deletes forwarded runs from its spool only: the shared
    server keeps them; and nothing is pruned locally while changes still wait."""
    store = SpoolStore(pg_url, str(tmp_path), forward=False)
    _write_run(store, "run-a", 4)
    _write_run(store, "run-b", 4)
    assert store.prunable_runs("run-b") == []  # run-a has not reached the server yet
    assert store.forwarder.drain(60) == 0
    assert store.prunable_runs("run-b") == ["run-a"]
    store.delete_run("run-a")
    assert store.waiting() == 0
    assert store.run("run-a") is None
    assert store.forwarder.drain(60) == 0
    pg = PostgresStore(pg_url)
    assert pg.count_sessions("run-a") == 4 and pg.run("run-a") is not None
    pg.close()
    store.close()
