"""One-call sessions stored a frame at a time (flowagent/sidecar/singles.py) name their
threads, keep their trees and are pruned exactly as the per-session path stores them: real
rings drained by the real Ingestor both ways, with threads that are named in some starts and
not others, renamed within a frame, shared with longer sessions, sessions given names, and a
retention window small enough that rows are pruned while held."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from flowagent.protocol.ring import RingWriter
from flowagent.protocol.wire import ERROR, PARTIAL, SUCCESS, VERSION, Encoder
from flowagent.sidecar import singles
from flowagent.sidecar.ingest import Ingestor, Retention
from flowagent.store.sqlite import SQLiteStore

RUN = "20250101-000000-thrds"
PK = "0000000071d5"
DEFS = [[1, "svc.api", "handle", "/s/api.py", 1, ["req"], "function"],
        [2, "svc.db", "load", "/s/db.py", 1, ["key"], "function"],
        [3, "svc.db", "fail", "/s/db.py", 9, [], "function"]]
STRINGS = [[1, ["dict{id:int}"]], [2, "list[int]"], [3, "KeyError"]]
ANCHOR = (1_700_000_000_000_000_000, 5_000_000)
COLUMNS = ("session_id, run_id, name, root_fid, pid, pk, thread, result, complete, started_ns, "
           "ended_ns, duration_ns, calls, errors, variant, tree_kept, fids, raised")


class Program:
    """One recorded process writing frames of random sessions into a real ring."""

    def __init__(self, run_dir: Path, seed: int, all_named: bool = False) -> None:
        self.all_named = all_named  # every start names its thread (as the recorder does)
        (run_dir / "rings").mkdir(parents=True)
        self.ring = RingWriter(str(run_dir / "rings" / f"71-{PK}.ring"), 1 << 22, 71, 1,
                               int(PK, 16), time.time_ns(), {"argv": ["svc"]})
        self.enc = Encoder()
        self.rnd = random.Random(seed)
        self.seq = 0
        self.cid = 1
        self.t = ANCHOR[1] + 1000

    def _start(self, ses: int, fid: int, t0: int, thr: int) -> list[Any]:
        start: list[Any] = [ses, fid, t0, thr]
        roll = self.rnd.random()
        if self.all_named:
            start.append(f"T{thr}" if roll < 0.9 else f"T{thr}-renamed-{self.seq}")
        elif roll < 0.4:
            start.append(f"T{thr}")
        elif roll < 0.5:
            start.append(f"T{thr}-renamed-{self.seq}")
        elif roll < 0.55:
            start.append("")  # a name the recorder sent empty
        return start

    def one_call(self) -> tuple[list[tuple[Any, ...]], list[Any]]:
        rnd = self.rnd
        ses = self.cid
        self.cid += 1
        fid = rnd.choice((1, 2, 3))
        res = rnd.choice((SUCCESS, SUCCESS, ERROR, PARTIAL))
        thr = rnd.choice((7, 7, 8, 9))
        t0 = self.t
        self.t += rnd.choice((40, 50, 70, 5000))
        call = (ses, 0, ses, fid, 0, rnd.choice((0, 1)), rnd.choice((0, 2)), res,
                3 if res == ERROR else 0, t0, self.t, rnd.choice((thr, thr, 11)), 0)
        self.t += 10
        return [call], self._start(ses, fid, t0, thr)

    def longer(self) -> tuple[list[tuple[Any, ...]], list[Any]]:
        ses = self.cid
        self.cid += 1
        thr = self.rnd.choice((7, 8))
        t0 = self.t
        calls = []
        for _ in range(self.rnd.randint(1, 3)):
            calls.append((self.cid, ses, ses, 2, 1, 1, 2, SUCCESS, 0, self.t + 10, self.t + 50,
                          thr, 0))
            self.cid += 1
            self.t += 100
        self.t += 100
        calls.append((ses, 0, ses, 1, 0, 1, 2, SUCCESS, 0, t0, self.t, thr, 0))
        self.t += 100
        return calls, self._start(ses, 1, t0, thr)

    def record(self, frames: int, per_frame: int) -> None:
        held: tuple[list[tuple[Any, ...]], list[Any]] | None = None
        for frame in range(frames):
            self.seq += 1
            calls: list[tuple[Any, ...]] = []
            starts: list[list[Any]] = []
            if held is not None:  # a one-call session whose start came a frame earlier
                calls += held[0]
                held = None
            for _ in range(per_frame):
                c, s = self.longer() if self.rnd.random() < 0.15 else self.one_call()
                calls += c
                starts.append(s)
            if frame < frames - 1:
                c, s = self.one_call()
                starts.append(s)
                held = (c, s)
            names = [[s[0], f"job-{s[0]}"] for s in starts if self.rnd.random() < 0.05]
            payload = self.enc.encode(
                {"v": VERSION, "pk": int(PK, 16), "pid": 71, "seq": self.seq,
                 "anchor": list(ANCHOR), "defs": DEFS, "strings": STRINGS, "starts": starts,
                 "names": names, "threads": [[7, "Main"], [9, "Worker"]],
                 "agent_errors": 0}, calls)
            assert self.ring.write(self.seq, payload, len(calls))


def _drain(base: Path, grouped: bool, retention: Retention, monkeypatch: pytest.MonkeyPatch,
           all_named: bool = False, few_keys: int | None = None
           ) -> tuple[SQLiteStore, Ingestor]:
    run_dir = base / "runs" / RUN
    Program(run_dir, seed=11, all_named=all_named).record(frames=8, per_frame=120)
    store = SQLiteStore(str(base / "flowagent.db"))
    store.db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES(?,0,'running')",
                     (RUN,))
    with monkeypatch.context() as m:
        if not grouped:
            m.setattr(singles, "pick", lambda *a: {})
        if few_keys is not None:  # a frame's groups found by a pass each up to this many
            m.setattr(singles, "_FEW_KEYS", few_keys)
        ingest = Ingestor(store, RUN, str(run_dir), retention)
        while ingest.poll():
            ingest.prune()
        ingest.finish_all()
        ingest.prune(force=True)
    return store, ingest


def _rows(store: SQLiteStore, sql: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in store.db.execute(sql))


@pytest.mark.parametrize("few_keys", [0, 1000], ids=["loop", "pass-per-group"])
@pytest.mark.parametrize("all_named", [False, True])
def test_grouped_one_call_sessions_store_what_the_per_session_path_stores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, all_named: bool,
        few_keys: int) -> None:
    retention = Retention(error_cap=25)
    grouped, g_ing = _drain(tmp_path / "grouped", True, retention, monkeypatch, all_named,
                            few_keys)
    each, e_ing = _drain(tmp_path / "each", False, retention, monkeypatch, all_named)
    sessions = f"SELECT {COLUMNS} FROM sessions"
    rows = _rows(grouped, sessions)
    assert len(rows) == 8 * 120 + 7
    assert rows == _rows(each, sessions)
    threads = {r[6] for r in rows}
    assert {"T7", "T8"} <= threads  # start names
    assert bool(threads & {"9", "11"}) != all_named  # bare ids where no name is known
    assert any(t.startswith(("T7-renamed", "T8-renamed", "T9-renamed")) for t in threads)
    assert any(r[2].startswith("job-") for r in rows)
    assert {r[15] for r in rows} >= {1, 2, 3}  # recent, failed, exemplar
    links = ("SELECT s.session_id, sc.calls, c.calls FROM session_chunks sc JOIN sessions s "
             "ON s.sid=sc.sid JOIN chunks c ON c.chunk_id=sc.chunk_id")
    assert _rows(grouped, links) == _rows(each, links)
    for table in ("graph_nodes", "graph_edges", "paths"):
        assert _rows(grouped, f"SELECT * FROM {table}") == _rows(each, f"SELECT * FROM {table}")
    # which session of a frame is named first may differ (the grouped ones are added after
    # the frame's others); counts and totals may not
    assert ([v[:7] for v in _rows(grouped, "SELECT * FROM variants")]
            == [v[:7] for v in _rows(each, "SELECT * FROM variants")])
    assert ([c[:8] for c in _rows(grouped, "SELECT * FROM error_clusters")]
            == [c[:8] for c in _rows(each, "SELECT * FROM error_clusters")])
    assert g_ing.procs[PK].threads == e_ing.procs[PK].threads
    for (sid,) in grouped.db.execute("SELECT session_id FROM sessions ORDER BY sid LIMIT 80"):
        assert grouped.session_calls(sid) == each.session_calls(sid)


def test_a_small_window_prunes_as_many_trees_and_unlinks_each_pruned_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a retention window far smaller than a frame, held rows are written pruned. Which
    sessions fall just outside the window follows row numbering, which differs between the
    paths where one-call sessions share a frame with longer ones (the grouped ones are
    numbered after the frame's others), so the counts are compared, and every pruned
    session must have lost its calls while every kept one reads them back."""
    retention = Retention(recent=60, error_cap=25)
    grouped, _ = _drain(tmp_path / "grouped", True, retention, monkeypatch)
    each, _ = _drain(tmp_path / "each", False, retention, monkeypatch)
    sessions = f"SELECT {COLUMNS} FROM sessions"
    rows, rows_each = _rows(grouped, sessions), _rows(each, sessions)
    strip = [r[:15] + r[16:] for r in rows]
    assert strip == [r[:15] + r[16:] for r in rows_each]
    kept = sorted(r[15] for r in rows)
    assert kept == sorted(r[15] for r in rows_each)
    assert kept.count(0) > 700 and kept.count(1) == 60
    linked = {r[0] for r in grouped.db.execute(
        "SELECT DISTINCT s.session_id FROM session_chunks sc JOIN sessions s ON s.sid=sc.sid")}
    assert linked == {r[0] for r in rows if r[15] != 0}
    for session_id, *_rest in rows[:100]:
        calls = grouped.session_calls(session_id)
        assert bool(calls) == (session_id in linked)
    for table in ("graph_nodes", "graph_edges", "paths"):
        assert _rows(grouped, f"SELECT * FROM {table}") == _rows(each, f"SELECT * FROM {table}")
