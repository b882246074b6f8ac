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
             retention: Retention) -> tuple[tuple, list[int]]:
    run_dir = base / "runs" / RUN
    _record(run_dir, mixed=True)
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
    return _dump(store), pruned


@pytest.mark.parametrize("recent", [50, 400, 10_000])
def test_set_wise_pruning_stores_what_row_by_row_pruning_did(tmp_path, monkeypatch, recent):
    retention = Retention(recent=recent, error_cap=20)
    new, pruned_new = _drained(tmp_path / "new", monkeypatch, False, retention)
    old, pruned_old = _drained(tmp_path / "old", monkeypatch, True, retention)
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
