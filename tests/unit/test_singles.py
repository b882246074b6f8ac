"""One-call sessions are stored a frame at a time (flowagent/sidecar/singles.py): the same
rings drained by the real Ingestor with and without that path give the same store."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_chunks import PK, RUN, Program, _aggregates, _drain, _store

from flowagent.protocol.wire import ERROR, PARTIAL, SUCCESS
from flowagent.sidecar import singles
from flowagent.sidecar.ingest import Retention

SESSION_COLUMNS = ("session_id, run_id, name, root_fid, pid, pk, thread, result, complete, "
                   "started_ns, ended_ns, duration_ns, calls, errors, variant, tree_kept, fids, "
                   "raised")


def _one_call(prog: Program, rnd: random.Random) -> tuple[list[tuple], list]:
    """A session whose root is its only call: one of three functions, shapes, results."""
    ses = prog.cid
    prog.cid += 1
    fid = rnd.choice((1, 2, 3))
    res = rnd.choice((SUCCESS, SUCCESS, SUCCESS, ERROR, PARTIAL))
    exc = 3 if res == ERROR else 0
    t0 = prog.t
    prog.t += rnd.choice((40, 50, 50, 70, 5000))
    start = [ses, fid, t0, 7] + (["Main"] if rnd.random() < 0.1 else [])
    call = (ses, 0, ses, fid, 0, rnd.choice((0, 1)), rnd.choice((0, 2)), res, exc, t0, prog.t,
            7, 0)
    prog.t += 10
    return [call], start


def _record(run_dir: Path, mixed: bool, seed: int = 7) -> None:
    rnd = random.Random(seed)
    prog = Program(run_dir)
    held: tuple[list, list] | None = None
    for frame in range(6):
        calls, starts = [], []
        if held is not None:  # a one-call session whose start came in the frame before
            calls += held[0]
            held = None
        for _ in range(300):
            if mixed and rnd.random() < 0.1:
                _ses, c, s = prog.session(rnd.choice((1, 2)), fail=rnd.random() < 0.3)
            else:
                c, s = _one_call(prog, rnd)
            calls += c
            starts.append(s)
        if mixed and frame < 5:
            c, s = _one_call(prog, rnd)
            starts.append(s)
            held = (c, s)
        prog.frame(calls, starts)


def _sessions(store) -> list[tuple]:
    return sorted(tuple(r) for r in store.db.execute(f"SELECT {SESSION_COLUMNS} FROM sessions"))


def _links(store) -> list[tuple]:
    return sorted(tuple(r) for r in store.db.execute(
        "SELECT s.session_id, c.run_id, c.calls, sc.calls FROM session_chunks sc "
        "JOIN sessions s ON s.sid=sc.sid JOIN chunks c ON c.chunk_id=sc.chunk_id"))


def _both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mixed: bool,
          retention: Retention = Retention()) -> tuple:
    """The store after draining the same rings by the grouped path and by the per-session
    path (the grouped path turned off)."""
    out = []
    for name, grouped in (("grouped", True), ("each", False)):
        base = tmp_path / name
        run_dir = base / "runs" / RUN
        _record(run_dir, mixed)
        store = _store(base)
        with monkeypatch.context() as m:
            if not grouped:
                m.setattr(singles, "pick", lambda *a: {})
            ingest = _drain(store, run_dir, retention)
            ingest.finish_all()
            ingest.prune(force=True)
        out.append(store)
    return tuple(out)


def test_frames_of_one_call_sessions_store_what_each_session_would(tmp_path, monkeypatch):
    grouped, each = _both(tmp_path, monkeypatch, mixed=False)
    rows = _sessions(grouped)
    assert len(rows) == 1800
    assert {r[7] for r in rows} == {"success", "error", "partial"}
    assert rows == _sessions(each)
    assert _links(grouped) == _links(each)
    assert _aggregates(grouped) == _aggregates(each)
    call = grouped.session_calls(f"{PK}-{rows[0][0].rpartition('-')[2]}")
    assert len(call) == 1


def test_mixed_frames_store_the_same_sessions_and_totals(tmp_path, monkeypatch):
    """One-call sessions beside longer ones and a one-call session whose start came a frame
    earlier. Only which session of a frame is named first (a shape's first session, a
    variant's examples) may differ: the grouped sessions are added after the frame's others."""
    grouped, each = _both(tmp_path, monkeypatch, mixed=True)
    assert _sessions(grouped) == _sessions(each)
    assert _links(grouped) == _links(each)
    nodes, edges, shapes, paths, variants, clusters = _aggregates(grouped)
    nodes_e, edges_e, shapes_e, paths_e, variants_e, clusters_e = _aggregates(each)
    assert (nodes, edges, paths) == (nodes_e, edges_e, paths_e)
    assert [s[:5] for s in shapes] == [s[:5] for s in shapes_e]
    assert [v[:7] for v in variants] == [v[:7] for v in variants_e]
    assert [c[:8] for c in clusters] == [c[:8] for c in clusters_e]


def test_retention_prunes_grouped_sessions_as_any_other(tmp_path, monkeypatch):
    grouped, each = _both(tmp_path, monkeypatch, mixed=False,
                          retention=Retention(recent=100, error_cap=20))
    rows = _sessions(grouped)
    assert rows == _sessions(each)
    kept = [r[15] for r in rows]
    assert kept.count(0) > 1000  # pruned to their summary row
    assert _links(grouped) == _links(each)
