"""Sidecar ingest rate and store size for a long-running service, with retention.

Writes synthetic but realistic batches (as a recorded process would: msgpack + zstd frames in
a shared-memory ring) for N sessions of a few calls each, with a handful of flow variants and
a small share of failures, drains them with the real :class:`Ingestor` into a fresh SQLite
store, and reports events/s, store size, and how many trees retention kept.

    .venv/bin/python benchmarks/retention_bench.py                 # 100 000 sessions
    .venv/bin/python benchmarks/retention_bench.py --sessions 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from flowagent.protocol.ring import RingWriter  # noqa: E402
from flowagent.protocol.wire import VERSION, Encoder  # noqa: E402
from flowagent.sidecar.ingest import Ingestor, Retention  # noqa: E402
from flowagent.store.sqlite import SQLiteStore  # noqa: E402

FUNCS = [(1, "svc.api", "handle"), (2, "svc.db", "load"), (3, "svc.db", "save"),
         (4, "svc.auth", "check"), (5, "svc.api", "render"), (6, "svc.api", "fail")]


def session_calls(ses: int, t: int, rnd: random.Random) -> tuple[list[tuple], int]:
    """One session: handle → check, load, [save], render | fail (children first)."""
    kind = rnd.random()
    calls = []
    cid = ses
    kids = [4, 2] + ([3] if kind < 0.3 else []) + ([6] if kind > 0.98 else [5])
    t0 = t
    for fid in kids:
        cid += 1
        res = 1 if fid == 6 else 0
        calls.append((cid, ses, ses, fid, 1, 7, 8 if not res else 0, res, 9 if res else 0,
                       t, t + 20_000, 1, 0))
        t += 25_000
    root_res = 2 if kind > 0.98 else 0
    calls.append((ses, 0, ses, 1, 0, 7, 8, root_res, 0, t0 - 1000, t + 1000, 1, 0))
    return calls, cid + 1


def run(sessions: int, batch_sessions: int, retention: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="fa-ret-")
    run_dir = os.path.join(tmp, "runs", "bench")
    os.makedirs(os.path.join(run_dir, "rings"))
    store = SQLiteStore(os.path.join(tmp, "flowagent.db"))
    store.db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES('bench', 0, 'running')")
    ring = RingWriter(os.path.join(run_dir, "rings", "1-00000000abcd.ring"), 64 << 20, 1, 0,
                      0xABCD, time.time_ns(), {"argv": ["bench"]})
    ingest = Ingestor(store, "bench", run_dir, Retention(recent=retention))
    enc = Encoder()
    rnd = random.Random(1)
    seq, ses, t = 0, 1, 10**12
    events = encode_s = ingest_s = 0.0
    defs = [[fid, mod, name, "svc.py", fid, ["x"], "function"] for fid, mod, name in FUNCS]
    strings = [[7, ["dict{id:int}"]], [8, "dict{ok:bool}"], [9, "KeyError"]]
    done = 0
    while done < sessions:
        n = min(batch_sessions, sessions - done)
        calls, starts = [], []
        for _ in range(n):
            starts.append([ses, 1, t, 1, "MainThread"])
            c, ses = session_calls(ses, t, rnd)
            calls.extend(c)
            t += 200_000
        seq += 1
        t0 = time.perf_counter()
        payload = enc.encode({"v": VERSION, "pk": 0xABCD, "pid": 1, "seq": seq,
                              "anchor": [0, 0], "defs": defs if seq == 1 else [],
                              "strings": strings if seq == 1 else [], "starts": starts,
                              "names": [], "threads": [], "agent_errors": 0}, calls)
        encode_s += time.perf_counter() - t0
        if not ring.write(seq, payload, len(calls)):
            raise SystemExit("ring full: raise the ring size")
        t0 = time.perf_counter()
        while ingest.poll():
            pass
        ingest.prune()
        ingest_s += time.perf_counter() - t0
        events += len(calls)
        done += n
    t0 = time.perf_counter()
    ingest.prune(force=True)
    ingest_s += time.perf_counter() - t0
    kept = dict(store.db.execute("SELECT tree_kept, COUNT(*) FROM sessions GROUP BY tree_kept")
                .fetchall())
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
               if f.startswith("flowagent.db"))
    return {"sessions": sessions, "events": int(events), "ingest_s": ingest_s,
            "events_per_s": events / ingest_s, "encode_s": encode_s,
            "store_mib": size / 2**20, "bytes_per_session": size / sessions,
            "kept_trees": {"pruned": kept.get(0, 0), "recent": kept.get(1, 0),
                           "failed": kept.get(2, 0), "exemplar": kept.get(3, 0)},
            "dir": tmp}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=500, help="sessions per batch")
    p.add_argument("--retention", type=int, default=10_000)
    a = p.parse_args()
    r = run(a.sessions, a.batch, a.retention)
    print("| sessions | events | ingest (events/s) | store | bytes/session | trees kept "
          "(recent / failed / exemplar) | pruned |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    k = r["kept_trees"]
    print(f"| {r['sessions']:,} | {r['events']:,} | {r['events_per_s']:,.0f} | "
          f"{r['store_mib']:.1f} MiB | {r['bytes_per_session']:.0f} | "
          f"{k['recent']:,} / {k['failed']:,} / {k['exemplar']:,} | {k['pruned']:,} |")


if __name__ == "__main__":
    main()
