"""Retention prunes a run's recent sessions set-wise (``Store.prune_recent``): the same rings
drained and pruned that way and by the row-by-row path (``kept_beyond`` then
``prune_trees``) leave the same store, byte for byte: sessions, links, chunks, aggregates."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_chunks import PK, RUN, _aggregates, _drain, _store
from test_singles import SESSION_COLUMNS, _record

from flowagent.sidecar.ingest import Ingestor, Retention
from flowagent.store.api import PRUNED, RECENT
from flowagent.store.sqlite import SQLiteStore


def _row_by_row(self: Ingestor, force: bool = False) -> int:
    """The pruning as it was before ``prune_recent``."""
    if not force and self._recent_since_prune < max(self.retention.recent // 10, 100):
        return 0
    self._recent_since_prune = 0
    rows = self.store.kept_beyond(self.run_id, RECENT, self.retention.recent)
    if not rows:
        return 0
    self.store.prune_trees(rows)
    return len(rows)


def _dump(store) -> tuple:
    db = store.db
    return (sorted(tuple(r) for r in db.execute(f"SELECT sid, {SESSION_COLUMNS} FROM sessions")),
            sorted(tuple(r) for r in db.execute("SELECT * FROM session_chunks")),
            sorted(tuple(r) for r in db.execute("SELECT * FROM chunks")),
            _aggregates(store))


def _drained(base: Path, monkeypatch: pytest.MonkeyPatch, row_by_row: bool,
             retention: Retention, mixed: bool = True) -> tuple[tuple, list[int], SQLiteStore]:
    run_dir = base / "runs" / RUN
    _record(run_dir, mixed=mixed)
    store = _store(base)
    with monkeypatch.context() as m:
        if row_by_row:
            m.setattr(Ingestor, "prune", _row_by_row)
        ingest = Ingestor(store, RUN, str(run_dir), retention)
        pruned = []
        while ingest.poll():  # as the sidecar's loop: prune after every poll
            pruned.append(ingest.prune())
        ingest.finish_all()
        pruned.append(ingest.prune(force=True))
    return _dump(store), pruned, store


@pytest.mark.parametrize("recent", [50, 400, 10_000])
def test_set_wise_pruning_stores_what_row_by_row_pruning_did(tmp_path, monkeypatch, recent):
    retention = Retention(recent=recent, error_cap=20)
    new, pruned_new, _ = _drained(tmp_path / "new", monkeypatch, False, retention)
    old, pruned_old, _ = _drained(tmp_path / "old", monkeypatch, True, retention)
    assert pruned_new == pruned_old
    assert new == old
    kept = [r[16] for r in new[0]]
    if recent < 1000:
        assert kept.count(PRUNED) > 500 and kept.count(RECENT) == recent
    else:
        assert PRUNED not in kept


def test_pruned_sessions_keep_no_calls_and_kept_ones_read_back(tmp_path):
    run_dir = tmp_path / "runs" / RUN
    _record(run_dir, mixed=True)
    store = _store(tmp_path)
    ingest = _drain(store, run_dir, Retention(recent=30, error_cap=5))
    ingest.finish_all()
    assert ingest.prune(force=True) > 0
    assert ingest.prune(force=True) == 0  # nothing left beyond the window
    rows = store.db.execute("SELECT session_id, tree_kept, calls FROM sessions").fetchall()
    for session_id, kept, calls in rows:
        stored = store.session_calls(session_id)
        assert len(stored) == (0 if kept == PRUNED else calls), session_id
    assert any(r[0].startswith(PK) for r in rows)


def _calls_of_kept(store) -> list:
    return [(sid, store.session_calls(sid)) for (sid,) in store.db.execute(
        "SELECT session_id FROM sessions ORDER BY sid")]


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("recent", [50, 400, 2000])
def test_held_sessions_written_pruned_store_what_pruning_them_later_did(tmp_path, monkeypatch,
                                                                        recent, mixed):
    """One-call sessions of a transaction beyond the retention window are written pruned
    (``singles.Held``) instead of being written, linked, then pruned: the same store."""
    from flowagent.sidecar import singles

    retention = Retention(recent=recent, error_cap=20)
    flush = singles.Held.flush
    written_pruned = []
    with monkeypatch.context() as m:
        m.setattr(singles.Held, "flush", lambda self, store, keep: written_pruned.append(
            flush(self, store, keep)) or written_pruned[-1])
        held, _, store_held = _drained(tmp_path / "held", monkeypatch, False, retention, mixed)
    with monkeypatch.context() as m:
        m.setattr(singles.Held, "flush", lambda self, store, _keep: flush(self, store, 1 << 40))
        later, _, store_later = _drained(tmp_path / "later", monkeypatch, False, retention,
                                         mixed)
    if recent < 1000 and not mixed:  # every frame's sessions held until the drain commits
        assert sum(written_pruned) > 1000
    assert held == later  # sessions, links, chunks, aggregates
    assert _calls_of_kept(store_held) == _calls_of_kept(store_later)


def test_a_held_flush_that_failed_is_written_whole_by_the_next(tmp_path):
    """A write of held rows that fails (and is rolled back with its frame) keeps them held:
    the next flush writes them, pruned ones still without links."""
    from flowagent.sidecar.singles import Held

    store = _store(tmp_path)
    chunk = store.add_chunk(RUN, PK, 0, 4, b"")
    held = Held()
    sid = held.next_sid(store)
    held.add([(sid + i, f"{PK}-{i}", RUN, "f", 1, 1, PK, "t", "success", 1, i, i + 1, 1, 1, 0,
               "v", RECENT, " 1 ", None) for i in range(4)], chunk)
    real = store.insert_session_columns
    calls = []

    def fails_once(cols, *singles):
        calls.append(len(cols[0]))
        if len(calls) == 1:
            raise OSError("disk full")
        real(cols, *singles)

    store.insert_session_columns = fails_once
    with pytest.raises(OSError):
        with store.savepoint():
            held.flush(store, 1)
    assert held and held.next_sid(store) == sid + 4
    assert held.flush(store, 1) == 3
    assert not held
    kept = store.db.execute("SELECT sid, tree_kept FROM sessions ORDER BY sid").fetchall()
    assert [tuple(r) for r in kept] == [(sid, PRUNED), (sid + 1, PRUNED), (sid + 2, PRUNED),
                                        (sid + 3, RECENT)]
    links = store.db.execute("SELECT sid FROM session_chunks").fetchall()
    assert [r[0] for r in links] == [sid + 3]
