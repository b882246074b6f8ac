"""The sidecar's C paths (decoding a frame's call block, the tree pass, the signature
statistics; ``flowagent.sidecar._fold``) and their Python twins store the same run: a real
ring of random deep sessions (errors caught and not, calls outliving their caller, callers
with more distinct children than ``MAX_KIDS``, sessions still open at the end, one-call
sessions, CPU times) drained by the real Ingestor both ways into real SQLite stores, every
table compared row for row. ``FLOWAGENT_PURE=1`` selects the twins in a fresh process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from array import array
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flowagent.protocol import wire
from flowagent.protocol.ring import RingWriter
from flowagent.protocol.wire import VERSION, Encoder
from flowagent.sidecar import sessiontree as st
from flowagent.sidecar import ingest as ingest_module
from flowagent.sidecar.ingest import Ingestor, Retention
from flowagent.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_fold_twins import _session  # noqa: E402

pytestmark = pytest.mark.skipif(st._c_fold() is None, reason="the C extension was not built")

RUN = "20250101-000000-twins"
PK = "0000000072d6"
ANCHOR = [1_700_000_000_000_000_000, 5_000]
GONE_NS = ANCHOR[0] + 10**12
DEFS = [[f, "svc.m", f"f{f}", "/s/m.py", f, [], "function"] for f in range(1, 2400)]
DEFS[7] = [8, "<request>", "root", "/s/m.py", 8, [], "function"]  # a request root
STRINGS = [[3, ["dict{id:int}"]], [4, "list[int]"], [5, "int"], [9, "KeyError"],
           [11, "ValueError"]]
TABLES = ("graph_nodes", "graph_edges", "variants", "paths", "error_clusters", "shape_counts",
          "session_chunks", "shapes", "functions")
SESSION_COLUMNS = ("session_id, name, root_fid, thread, result, complete, started_ns, "
                   "ended_ns, duration_ns, calls, errors, variant, tree_kept, fids, raised")


def _record(run_dir: Path, seed: int) -> None:
    """Frames of interleaved random sessions, as a recorder writes them, into a real ring."""
    rng = random.Random(seed)
    (run_dir / "rings").mkdir(parents=True)
    ring = RingWriter(str(run_dir / "rings" / f"72-{PK}.ring"), 1 << 23, 72, 1, int(PK, 16),
                      time.time_ns(), {"argv": ["svc"]})
    enc = Encoder()
    pending: list[tuple[Any, ...]] = []
    starts: list[list[Any]] = []
    t, ses, seq = 10_000, 1_000, 0
    for _ in range(80):
        if rng.random() < 0.5:  # a one-call session
            pending.append((ses, 0, ses, 7, 0, 3, 4, rng.choice((0, 1)), 0, t, t + 40, 1,
                            rng.randrange(3)))
            starts.append([ses, 7, t, 1])
            ses += 1
        else:
            records = _session(rng, ses, t)
            if rng.random() < 0.15:  # still open when the run ends: its root never came
                records = [r for r in records if r[0] != ses]
            pending += [(*r[:12], r[12] * rng.randrange(2)) for r in records]
            starts.append([ses, 7, t, 1, "Main"])
            ses += 100_000
        t += 1_000_000
        if rng.random() < 0.4 or len(pending) > 3000:
            seq += 1
            cut = rng.randrange(len(pending) + 1)  # a session spread over two frames
            calls, pending = pending[:cut], pending[cut:]
            payload = enc.encode({"v": VERSION, "pk": int(PK, 16), "pid": 72, "seq": seq,
                                  "anchor": ANCHOR, "defs": DEFS if seq == 1 else [],
                                  "strings": STRINGS if seq == 1 else [], "starts": starts,
                                  "threads": [[1, "Main"]], "agent_errors": 0}, calls)
            starts = []
            assert ring.write(seq, payload, len(calls))
    seq += 1
    assert ring.write(seq, enc.encode({"v": VERSION, "pk": int(PK, 16), "pid": 72, "seq": seq,
                                       "starts": starts, "agent_errors": 0}, pending),
                      len(pending))


def _drain(base: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> SQLiteStore:
    run_dir = base / "runs" / RUN
    _record(run_dir, seed)
    # Sessions still open end when their process was seen gone: the same moment both ways.
    monkeypatch.setattr(ingest_module, "time", SimpleNamespace(time_ns=lambda: GONE_NS))
    store = SQLiteStore(str(base / "flowagent.db"))
    store.db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES(?,0,'running')",
                     (RUN,))
    ingest = Ingestor(store, RUN, str(run_dir), Retention(recent=20, error_cap=5))
    while ingest.poll():
        ingest.prune()
    ingest.finish_all()
    ingest.prune(force=True)
    assert ingest.undecodable == 0
    return store


def _dump(store: SQLiteStore) -> dict[str, list[tuple[Any, ...]]]:
    out = {t: sorted(map(tuple, store.db.execute(f"SELECT * FROM {t}"))) for t in TABLES}
    out["sessions"] = sorted(map(tuple, store.db.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions")))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_and_python_paths_store_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               seed: int) -> None:
    c = _dump(_drain(tmp_path / "c", seed, monkeypatch))
    with monkeypatch.context() as m:
        m.setattr(st, "_fold_c", None)
        m.setattr(st, "_count_c", None)
        m.setattr(wire, "_c_columns", lambda: None)
        pure = _dump(_drain(tmp_path / "pure", seed, m))
    assert len(c["sessions"]) > 20 and len(c["error_clusters"]) > 0
    assert any(row[4] == "incomplete" for row in c["sessions"])
    assert any(row[12] == 0 for row in c["sessions"])  # pruned by retention
    for table, rows in c.items():
        assert rows == pure[table], table


def test_decoding_in_c_gives_the_python_columns() -> None:
    c_columns = wire._c_columns()
    assert c_columns is not None
    rng = random.Random(5)
    values = (0, 1, 7, 255, 256, 257, -1, -5, -6, 2**31, 2**40, -2**40, 2**62 - 1, -2**62)
    for n in (0, 1, 2, 3, 64, 1000):
        # ids and starts grow, as recorded; everything else any int64
        records = [(1000 + 3 * i, rng.choice(values), 5, rng.choice(values), rng.choice(values),
                    0, 1, rng.choice(values), 0, 10**18 + 1000 * i, 10**18 + 1000 * i
                    + rng.choice(values[:6]), rng.choice(values), rng.choice(values))
                   for i in range(n)]
        data = wire.columns(wire.pack_records(records))
        cols, dur, bounds, raw = c_columns(n, data)
        py = wire._columns(n, data)
        assert (cols, dur) == (py.cols, py.dur)
        assert bounds == ((min(dur), max(cols[10])) if n else None)
        assert [tuple(r) for r in zip(*cols)] == records
        # the raw block: the fields with durations in place of the ends, then the ends
        block = array("q", raw).tolist()
        assert [block[f * n:(f + 1) * n] for f in range(14)] == [*cols[:10], dur, *cols[11:],
                                                                 cols[10]]
    # a block whose running sums leave int64 (only a malformed frame has one): Python's ints
    deltas = array("q", [2**62] * 3 + [0] * 36)  # call ids 2**62 apart
    raw = deltas.tobytes() if sys.byteorder == "little" else _swapped(deltas)
    big = b"".join(raw[b::8] for b in range(8))
    assert c_columns(3, big) is None  # 2**62 three times over
    assert wire.Decoder()._call_columns(3, big).cols[0] == [2**62, 2**63, 3 * 2**62]
    with pytest.raises(ValueError):
        c_columns(2, b"\0" * 10)


LEFT_OUT = (1, 5, 6, 10, 12)  # parents, ins, outs, end times, CPU times


def test_the_end_times_are_made_when_first_read() -> None:
    """The C decoder leaves the lists of the end times, parents, ins, outs and CPU times out
    (the fold reads the raw block); reading ``cols``, one column, a row or a slice makes
    them, equal to what the Python decoder makes."""
    rng = random.Random(8)
    n = 500
    records = [(10 + i, 0, 10 + i, rng.randrange(9), 0, 0, 0, 0, 0, 10**15 + 7 * i,
                10**15 + 7 * i + rng.randrange(2**40), 3, 0) for i in range(n)]
    data = wire.columns(wire.pack_records(records))
    assert wire.Decoder()._c_columns is not None
    py = wire._columns(n, data)
    for read in ("cols", "col", "rows", "row", "slice"):
        calls = wire.Decoder()._call_columns(n, data)
        assert all(calls.made(f) is None for f in LEFT_OUT) and calls.col(9) == py.cols[9]
        if read == "cols":
            assert calls.cols == py.cols
        elif read == "col":
            for f in LEFT_OUT:
                assert calls.col(f) == py.cols[f] and calls.made(f) == py.cols[f]
        elif read == "rows":
            assert calls.rows() == records
        elif read == "row":
            assert calls.row(n - 1) == records[-1]
        else:
            part = calls.slice(100, 300)
            assert part.cols == [col[100:300] for col in py.cols] and part.raw is None
        assert [calls.made(f) for f in LEFT_OUT] == [py.cols[f] for f in LEFT_OUT]


def _swapped(a: array[int]) -> bytes:
    b = array("q", a)
    b.byteswap()
    return b.tobytes()


def test_count_sigs_declines_what_is_not_an_int64() -> None:
    count_c = st._c_count()
    assert count_c is not None
    sigs: dict[tuple[Any, ...], list[Any]] = {}
    cols = [[1, 1], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [5, 2**70], [0, 0]]
    assert count_c(sigs, *cols, 3) is False and sigs == {}
    cols[6] = [5, 6]
    assert count_c(sigs, *cols, 3) is True
    assert sigs == {(1, 0, 0, 0, 0, 0): [2, 11, 11, 5, 6, 0, {~5: 1, ~6: 1}]}


def test_the_c_passes_read_a_raw_block_only_of_their_own_size() -> None:
    """fold_tree and count_sigs read the values of a decoded batch from its raw block, and
    the lists' ints where the block is missing or not of the columns' length (a slice, a
    bad block): the same statistics and tree either way."""
    c_columns = wire._c_columns()
    assert c_columns is not None and st._fold_c is not None and st._count_c is not None
    rng = random.Random(11)
    n = 300
    records, open_ = [], [1]
    for i in range(n):  # a random tree of session 1, children ending first
        cid = 2 + i
        par = rng.choice(open_)
        records.append((cid, par, 1, 1 + cid % 4, 1 + par % 4, cid % 3, 0,
                        rng.choice((0, 0, 0, 1)), 0, 10**9 + 50 * i, 10**9 + 50 * i
                        + rng.randrange(1, 40), 7, rng.randrange(3)))
        open_.append(cid)
    records.reverse()  # every call after its callees, as they end
    data = wire.columns(wire.pack_records(records))
    cols, dur, _bounds, raw = c_columns(n, data)
    args = [cols[f] for f in (0, 1, 3, 4, 5, 6, 7, 8, 9)] + [dur]
    sig_args = [cols[f] for f in (3, 4, 5, 6, 7, 8)] + [dur, cols[12]]
    results = []
    for block in (raw, None, raw[:-8], b"", 5):
        tree = st.SessionTree(1, st.Namer(str))
        minus = st._fold_c(tree, *args, block)
        sigs: dict[tuple[Any, ...], list[Any]] = {}
        assert st._count_c(sigs, *sig_args, 3, block) is True
        results.append((minus, sigs, tree.digest, tree.paths, tree.errors,
                        sorted((k, v[:4] + v[5:]) for k, v in tree._open.items())))
    assert results[0][0] and results[0][1]
    assert all(r == results[0] for r in results)
    # the columns the decoder leaves in the block (None) are read there; without a block of
    # their size the C passes decline, changing nothing
    for f in (1, 4, 5):
        args[f] = None
    for f in (2, 3, 7):
        sig_args[f] = None
    for block in (raw, None, raw[:-8]):
        tree = st.SessionTree(1, st.Namer(str))
        minus = st._fold_c(tree, *args, block)
        sigs = {}
        counted = st._count_c(sigs, *sig_args, 3, block)
        if block is raw:
            assert counted is True
            assert (minus, sigs, tree.digest, tree.paths, tree.errors, sorted(
                (k, v[:4] + v[5:]) for k, v in tree._open.items())) == results[0]
        else:
            assert minus is None and counted is False and sigs == {} and tree._open == {}


def test_pure_selects_every_python_twin() -> None:
    code = ("import json; from flowagent.sidecar import sessiontree as st; "
            "from flowagent.protocol.wire import Decoder; "
            "print(json.dumps([st.FOLD_CORE, st._count_c is None, "
            "Decoder()._c_columns is None]))")
    out = {}
    for pure in ("1", ""):
        env = dict(os.environ, FLOWAGENT_PURE=pure)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              timeout=60, check=True)
        out[pure] = json.loads(proc.stdout)
    assert out == {"1": ["python", True, True], "": ["c", False, False]}
