"""One-call sessions in the SQLite store's compact tables (``session_kinds`` and
``single_sessions``) read exactly as rows of ``sessions``: a real ring of random sessions
(one-call ones among deep ones, errors, sessions still open, retention pruning) drained by
the real Ingestor into a store with the compact form and into one without it, and every
reader compared; an older store (every session a ``sessions`` row, the earlier stamp) is
read as it is and taken over by a writer; linked sessions and sessions given calls later
become rows of ``sessions``."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from flowagent.errors import StoreError
from flowagent.sidecar.singles import Held
from flowagent.store.api import RECENT, SessionFilter
from flowagent.store.sqlite import DATA_FORMAT, SQLITE_FORMAT, SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sidecar"))
from test_ingest_twins import RUN, _drain  # noqa: E402


def _reads(store: SQLiteStore) -> dict[str, Any]:
    """What the viewer, the CLI, exports and retention read of the run."""
    out: dict[str, Any] = {}
    ids = [r["session_id"] for r in store.sessions(RUN, limit=10_000)]
    out["ids"] = ids
    for order in ("started", "-started", "duration", "calls"):
        for offset in (0, 7, len(ids) - 3):
            out[f"list {order} {offset}"] = store.sessions(RUN, order=order, limit=5,
                                                          offset=offset)
    for result in ("success", "error", "incomplete"):
        out[f"list {result}"] = store.sessions(RUN, result=result, limit=1000)
        out[f"count {result}"] = store.count_matching(SessionFilter(RUN, result=result))
    out["long"] = store.sessions(RUN, min_duration_ns=41, limit=1000)
    out["search"] = store.sessions(RUN, search="f7", limit=1000)
    out["count"] = (store.count_sessions(RUN), store.count_sessions())
    out["totals"] = store.session_totals(RUN)
    out["results"] = store.session_results(RUN)
    out["variants"] = store.variant_results(RUN)
    out["stored"] = (store.stored_calls(RUN), store.stored_calls())
    out["total"] = store.aggregates(RUN)["total_sessions"]
    out["one"] = [store.session(i) for i in ids]
    out["graphs"] = [_graph(store, i) for i in ids]
    out["calls"] = [store.session_calls(i) for i in ids]
    out["starts"] = store.session_starts([*ids, "nobody-1", "0000000072d6-01000"])
    out["kept"] = ([store.count_kept(RUN, k) for k in range(4)],
                   [store.kept_beyond(RUN, k, 2) for k in range(1, 4)])
    out["roots"] = (store.function_sessions(RUN, "svc.m:f7"),
                    store.root_sessions(RUN, "svc.m:f7", 50))
    out["exceptions"] = store.exception_types(RUN)
    return out


def _graph(store: SQLiteStore, session_id: str) -> Any:
    # the ring's shapes are not the agent's JSON: a tree with shapes fails to describe
    # them, the same way in either form
    try:
        return store.session_graph(session_id)
    except ValueError as exc:
        return type(exc).__name__


def _singles(store: SQLiteStore) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM main.single_sessions").fetchone()[0])


@pytest.mark.parametrize("seed", [1, 2])
def test_one_call_sessions_read_the_same_in_either_form(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    compact = _drain(tmp_path / "compact", seed, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(SQLiteStore, "compact_singles", False)
        table = _drain(tmp_path / "table", seed, m)
        assert not table._singles
        assert table.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE "
                                "name='single_sessions'").fetchone()[0] == 0
    assert _singles(compact) > 5
    a, b = _reads(compact), _reads(table)
    assert len(a["ids"]) > 20 and any(a["kept"][0])
    for key in a:
        assert a[key] == b[key], key
    # a reader's connection (the viewer's, the CLI's) sees the same
    reader = SQLiteStore(compact.path, readonly=True)
    assert reader._singles
    c = _reads(reader)
    for key in a:
        assert a[key] == c[key], key
    reader.close()
    # deleting the run leaves nothing of it in either form
    compact.delete_run(RUN)
    assert _singles(compact) == 0
    assert compact.db.execute("SELECT COUNT(*) FROM session_kinds").fetchone()[0] == 0
    assert compact.sessions(RUN) == [] and compact.count_sessions() == 0


def _held_singles(store: SQLiteStore, first: int, n: int, name: str = "m:f") -> None:
    held = Held()
    sid = held.next_sid(store)
    held.add([(sid + i, f"p-{first + i}", RUN, name, 1, 7, "p", "Main", "success", 1,
               1000 + first + i, 1010 + first + i, 10, 1, 0, "v", RECENT, " 1 ", None)
              for i in range(n)], store.add_chunk(RUN, "p", 0, n, b""))
    with store.transaction():
        held.flush(store, 1000)


def test_an_older_store_is_read_as_it_is_and_taken_over_by_a_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "flowagent.db")
    with monkeypatch.context() as m:  # the earlier layout: every session a row of sessions
        m.setattr(SQLiteStore, "compact_singles", False)
        old = SQLiteStore(path)
        old.create_run(RUN, 1, None, None)
        _held_singles(old, 1, 5)
        old.close()
    assert sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == DATA_FORMAT
    reader = SQLiteStore(path, readonly=True)  # read as it is: no table is added
    assert not reader._singles and reader.count_sessions(RUN) == 5
    before = reader.sessions(RUN)
    reader.close()
    writer = SQLiteStore(path)
    assert writer._singles and _singles(writer) == 0
    assert writer.sessions(RUN) == before
    _held_singles(writer, 6, 4)
    assert _singles(writer) == 4 and writer.count_sessions(RUN) == 9
    assert [s["session_id"] for s in writer.sessions(RUN)] == [f"p-{i}" for i in range(1, 10)]
    writer.close()
    assert sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == SQLITE_FORMAT
    reader = SQLiteStore(path, readonly=True)
    assert reader.session("p-8")["started_ns"] == 1008 and reader.session("p-08") is None
    reader.close()


def test_a_store_of_another_format_is_still_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "flowagent.db")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (f"{DATA_FORMAT}.s9",))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="different flowagent version"):
        SQLiteStore(path, readonly=True)


def test_linked_sessions_and_sessions_given_calls_become_rows(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "flowagent.db"))
    store.create_run(RUN, 1, None, None)
    _held_singles(store, 1, 6)
    listed = store.sessions(RUN)
    assert _singles(store) == 6
    # a child process's session under p-2's call: both leave the compact form, and the
    # child is counted in its parent, not listed alone
    with store.transaction():
        store.add_session_link(RUN, "p-3", "p-2", 1, "m:f", 7)
    assert _singles(store) == 4
    assert store.db.execute("SELECT COUNT(*) FROM main.sessions").fetchone()[0] == 2
    assert store.count_sessions(RUN) == 5
    assert [s["session_id"] for s in store.sessions(RUN)] == ["p-1", "p-2", "p-4", "p-5",
                                                              "p-6"]
    assert store.session("p-2")["calls"] == 2 and store.parent_session("p-3") == "p-2"
    # a session linked before its rows are written is written as a row
    with store.transaction():
        store.add_session_link(RUN, "p-8", "p-2", 1, "m:f", 7)
    _held_singles(store, 7, 3)
    assert _singles(store) == 6 and store.session("p-8")["calls"] == 1
    assert store.session("p-2")["calls"] == 3
    # calls added to a one-call session (an importer's): its row carries them
    with store.transaction():
        store.add_calls("p-5", [])
    assert _singles(store) == 5
    assert store.session("p-5") == next(s for s in listed if s["session_id"] == "p-5")
    store.close()


def test_sessions_that_share_nothing_are_written_as_rows(tmp_path: Path) -> None:
    """A name per session (the kinds would be as many as the rows): plain rows."""
    store = SQLiteStore(str(tmp_path / "flowagent.db"))
    store.create_run(RUN, 1, None, None)
    held = Held()
    sid = held.next_sid(store)
    held.add([(sid + i, f"p-{i}", RUN, f"GET /item/{i}", 1, 7, "p", "Main", "success", 1,
               i, i + 10, 10, 1, 0, "v", RECENT, " 1 ", None) for i in range(1, 101)],
             store.add_chunk(RUN, "p", 0, 100, b""))
    with store.transaction():
        held.flush(store, 1000)
    assert _singles(store) == 0 and store.count_sessions(RUN) == 100
    assert store.session("p-42")["name"] == "GET /item/42"
    store.close()
