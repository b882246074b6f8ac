"""Call records at rest as compressed chunks: what a real ring drained by the real Ingestor
stores reads back call for call, survives a sidecar restart in the middle of a session, and
retention frees what only pruned sessions used."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from flowagent.protocol.ring import RingWriter
from flowagent.protocol.wire import ERROR, SUCCESS, VERSION, Encoder
from flowagent.errors import StoreError
from flowagent.sidecar.ingest import Ingestor, Retention
from flowagent.store import queries
from flowagent.store.sqlite import SQLiteStore

RUN = "20250101-000000-chunk"
PK = "00000000c0de"
DEFS = [[1, "svc.api", "handle", "/s/api.py", 1, ["req"], "function"],
        [2, "svc.db", "load", "/s/db.py", 1, ["key"], "function"],
        [3, "svc.db", "fail", "/s/db.py", 9, [], "function"]]
STRINGS = [[1, ["dict{id:int}"]], [2, "list[int]"], [3, "KeyError"]]
ANCHOR = (1_700_000_000_000_000_000, 5_000_000)


class Program:
    """One recorded process writing frames into a real ring, as transport.py does."""

    def __init__(self, run_dir: Path) -> None:
        (run_dir / "rings").mkdir(parents=True)
        self.ring = RingWriter(str(run_dir / "rings" / f"77-{PK}.ring"), 1 << 22, 77, 1,
                               int(PK, 16), time.time_ns(), {"argv": ["svc"]})
        self.enc = Encoder()
        self.seq = 0
        self.cid = 1
        self.t = ANCHOR[1] + 1000

    def session(self, loads: int, fail: bool = False) -> tuple[int, list[tuple], list]:
        """Records of one session (children first), and its start entry."""
        ses = self.cid
        self.cid += 1
        start = [ses, 1, self.t, 7, "MainThread"]
        t0 = self.t
        calls = []
        for _ in range(loads):
            calls.append((self.cid, ses, ses, 2, 1, 1, 2, SUCCESS, 0, self.t + 10, self.t + 50,
                          7, 0))
            self.cid += 1
            self.t += 100
        if fail:
            calls.append((self.cid, ses, ses, 3, 1, 0, 0, ERROR, 3, self.t, self.t + 5, 7, 0))
            self.cid += 1
        self.t += 100
        calls.append((ses, 0, ses, 1, 0, 1, 2, ERROR if fail else SUCCESS, 3 if fail else 0,
                      t0, self.t, 7, 0))
        self.t += 100
        return ses, calls, start

    def frame(self, calls: list[tuple], starts: list) -> None:
        self.seq += 1
        payload = self.enc.encode({"v": VERSION, "pk": int(PK, 16), "pid": 77, "seq": self.seq,
                                   "anchor": list(ANCHOR), "defs": DEFS, "strings": STRINGS,
                                   "starts": starts, "names": [], "threads": [[7, "Main"]],
                                   "agent_errors": 0}, calls)
        assert self.ring.write(self.seq, payload, len(calls))


def _store(tmp: Path) -> SQLiteStore:
    store = SQLiteStore(str(tmp / "flowagent.db"))
    store.db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES(?,0,'running')",
                     (RUN,))
    return store


def _drain(store: SQLiteStore, run_dir: Path, retention: Retention = Retention()) -> Ingestor:
    ingest = Ingestor(store, RUN, str(run_dir), retention)
    while ingest.poll():
        pass
    return ingest


def _aggregates(store: SQLiteStore) -> tuple:
    db = store.db
    return tuple(sorted(tuple(r) for r in db.execute(f"SELECT * FROM {t}"))
                 for t in ("graph_nodes", "graph_edges", "shape_counts", "paths", "variants",
                           "error_clusters"))


def test_stored_calls_read_back_call_for_call(tmp_path):
    run_dir = tmp_path / "runs" / RUN
    prog = Program(run_dir)
    a, calls_a, start_a = prog.session(3)
    b, calls_b, start_b = prog.session(2, fail=True)
    prog.frame(calls_a + calls_b, [start_a, start_b])  # two sessions in one frame
    store = _store(tmp_path)
    _drain(store, run_dir)
    got = store.session_calls(f"{PK}-{b}")
    shift = ANCHOR[0] - ANCHOR[1]
    fids = {r["name"]: r["fid"] for r in store.functions(RUN).values()}
    want = sorted(calls_b, key=lambda c: (c[9], c[0]))
    assert [(c["call_id"], c["parent_id"], c["fid"], c["result"], c["t0"], c["t1"])
            for c in got] == [(c[0], c[1], fids[["svc.api:handle", "svc.db:load",
                                                 "svc.db:fail"][c[3] - 1]],
                               c[7], c[9] + shift, c[10] + shift) for c in want]
    assert store.shape_text(got[-1]["exc_sid"]) == "KeyError"
    assert store.stored_calls(RUN) == {"calls": 8, "placeholders": 0}
    graph = store.session_graph(f"{PK}-{a}")
    assert [n["function_name"] for n in graph["nodes"]] == ["svc.api:handle"] + [
        "svc.db:load"] * 3
    assert graph["nodes"][1]["input_shape"] == {"key": "dict{id:int}"}
    # the session row lists its functions and what they raised: search without decoding
    assert [s["session_id"] for s in store.sessions(RUN, search="db:fail")] == [f"{PK}-{b}"]
    assert queries.exception_types(store, RUN) == [
        {"function_name": "svc.api:handle", "exception_type": "KeyError", "count": 1},
        {"function_name": "svc.db:fail", "exception_type": "KeyError", "count": 1}]
    assert [s["session_id"] for s in queries.function_sessions(store, RUN, "svc.db:load")] == [
        f"{PK}-{b}", f"{PK}-{a}"]


def test_a_restarted_sidecar_finishes_open_sessions_as_if_never_stopped(tmp_path):
    def record(base: Path, stop_after: int | None) -> SQLiteStore:
        run_dir = base / "runs" / RUN
        prog = Program(run_dir)
        store = _store(base)
        _ses, calls, start = prog.session(40, fail=True)
        # one long session over 4 frames, plus a short one finishing in the third
        _other, other_calls, other_start = prog.session(1)
        frames = [(calls[:10], [start]), (calls[10:20], []),
                  (calls[20:30] + other_calls, [other_start]), (calls[30:], [])]
        for i, (part, starts) in enumerate(frames):
            prog.frame(part, starts)
            if i == stop_after:
                _drain(store, run_dir)
                store.close()  # the sidecar dies; a new one resumes from the store
                store = SQLiteStore(str(base / "flowagent.db"))
        _drain(store, run_dir).finish_all()
        return store

    whole = record(tmp_path / "whole", None)
    resumed = record(tmp_path / "resumed", 1)
    assert _aggregates(resumed) == _aggregates(whole)
    assert resumed.stored_calls(RUN) == whole.stored_calls(RUN) == {"calls": 44,
                                                                    "placeholders": 0}
    assert [s["result"] for s in resumed.sessions(RUN)] == ["error", "success"]


def test_a_dead_process_leaves_placeholders_for_its_open_calls(tmp_path):
    run_dir = tmp_path / "runs" / RUN
    prog = Program(run_dir)
    ses, calls, start = prog.session(2)
    prog.frame(calls[:2], [start])  # the root never ends
    store = _store(tmp_path)
    ingest = _drain(store, run_dir)
    assert ingest.finish_all() == 1
    assert store.stored_calls(RUN) == {"calls": 2, "placeholders": 1}
    s = store.session(f"{PK}-{ses}")
    assert (s["result"], s["complete"], s["calls"]) == ("incomplete", False, 2)
    root = store.session_calls(f"{PK}-{ses}")[0]
    assert (root["call_id"], root["result"]) == (ses, 3)


def test_pruned_trees_free_their_chunks_and_shared_frames_shrink(tmp_path):
    run_dir = tmp_path / "runs" / RUN
    prog = Program(run_dir)
    sessions = []
    for frame_no in range(6):  # frames of 20 sessions; the failed one is kept as exemplar
        batch, starts = [], []
        for i in range(20):
            ses, calls, start = prog.session(3, fail=(frame_no == 0 and i == 7))
            sessions.append(ses)
            batch += calls
            starts.append(start)
        prog.frame(batch, starts)
    store = _store(tmp_path)
    ingest = _drain(store, run_dir, Retention(recent=20, error_cap=5))
    failed = f"{PK}-{sessions[7]}"
    before = store.db.execute("SELECT COUNT(*), SUM(length(data)) FROM chunks").fetchone()
    pruned = ingest.prune(force=True)
    assert pruned > 0
    after = store.db.execute("SELECT COUNT(*), SUM(length(data)) FROM chunks").fetchone()
    assert after[0] < before[0] and after[1] < before[1]
    assert store.db.execute("SELECT COUNT(*) FROM chunks WHERE chunk_id NOT IN "
                            "(SELECT chunk_id FROM session_chunks)").fetchone()[0] == 0
    # the first frame was rewritten to the calls of its two kept sessions (the exemplars of
    # the success flow and of the failure), which still read back
    assert len(store.session_calls(failed)) == 5
    assert len(store.session_calls(f"{PK}-{sessions[0]}")) == 4
    first = store.db.execute("SELECT c.calls FROM chunks c JOIN session_chunks sc ON "
                             "sc.chunk_id=c.chunk_id JOIN sessions s ON s.sid=sc.sid "
                             "WHERE s.session_id=?", (failed,)).fetchone()[0]
    assert first == 4 + 5
    kept = [s["session_id"] for s in store.sessions(RUN, limit=1000) if s["tree_kept"]]
    assert all(len(store.session_calls(k)) == 4 for k in kept if k != failed)


def test_a_store_of_another_data_format_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "flowagent.db"
    SQLiteStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="different flowagent version.*another --data-dir"):
        SQLiteStore(str(path), readonly=True)
