"""One simulated host's sidecar, run as a process by the fleet tests.

    python fleet_host.py URL DATA_DIR RUN_ID PROCESS [PROCESS ...]

Each PROCESS index gets a ring of deterministic frames (the same sessions, ids and times for
the same index, whichever host ingests it) in the run directory; the real
:class:`~flowagent.sidecar.ingest.Ingestor` drains them into the ``postgresql://`` store's
writer (the spool), and closing it forwards everything to the server. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import sys

SESSIONS = 60        # per process
PER_FRAME = 7        # sessions per frame (frames end mid-way through no session)
FUNCS = [(1, "svc.api", "handle"), (2, "svc.db", "load"), (3, "svc.db", "save"),
         (4, "svc.auth", "check"), (5, "svc.api", "render"), (6, "svc.api", "fail")]
ANCHOR = (1_700_000_000_000_000_000, 10**12)  # the same wall/monotonic anchor everywhere


def session_calls(ses: int, t: int, rnd: random.Random) -> tuple[list[tuple], int]:
    """handle → check, load, [save], render | fail; children first, then the root."""
    kind = rnd.random()
    calls, cid, t0 = [], ses, t
    for fid in [4, 2] + ([3] if kind < 0.3 else []) + ([6] if kind > 0.9 else [5]):
        cid += 1
        res = 1 if fid == 6 else 0
        calls.append((cid, ses, ses, fid, 1, 7, 0 if res else 8, res, 9 if res else 0,
                      t, t + 20_000 + rnd.randrange(5000), 1, 0))
        t += 25_000
    root = 2 if kind > 0.9 else 0
    calls.append((ses, 0, ses, 1, 0, 7, 8, root, 0, t0 - 1000, t + 1000, 1, 0))
    return calls, cid + 1


def frames(process: int) -> list[tuple[int, bytes, int]]:
    from flowagent.protocol.wire import VERSION, Encoder

    enc = Encoder()
    rnd = random.Random(process)
    defs = [[fid, mod, name, "svc.py", fid, ["x"], "function"] for fid, mod, name in FUNCS]
    strings = [[7, ["dict{id:int}"]], [8, "dict{ok:bool}"], [9, "KeyError"]]
    out, ses, t, seq, done = [], 1, 10**12 + process * 10**9, 0, 0
    while done < SESSIONS:
        n = min(PER_FRAME, SESSIONS - done)
        calls, starts = [], []
        for _ in range(n):
            starts.append([ses, 1, t, 1, "MainThread"])
            c, ses = session_calls(ses, t, rnd)
            calls.extend(c)
            t += 200_000
        seq += 1
        payload = enc.encode({"v": VERSION, "pk": 0x5000 + process, "pid": 1, "seq": seq,
                              "anchor": list(ANCHOR), "defs": defs if seq == 1 else [],
                              "strings": strings if seq == 1 else [], "starts": starts,
                              "names": [], "threads": [], "agent_errors": 0}, calls)
        out.append((seq, payload, len(calls)))
        done += n
    return out


def main() -> None:
    url, data_dir, run_id, *procs = sys.argv[1:]
    from flowagent.protocol.ring import RingWriter
    from flowagent.sidecar.ingest import Ingestor
    from flowagent.store.postgres import SpoolStore
    from flowagent.store.spool import spool_path

    run_dir = os.path.join(data_dir, "runs", run_id)
    os.makedirs(os.path.join(run_dir, "rings"))
    for p in map(int, procs):
        key = 0x5000 + p
        ring = RingWriter(os.path.join(run_dir, "rings", f"1-{key:012x}.ring"), 8 << 20, 1, 0,
                          key, ANCHOR[0], {"argv": ["fleet"]})
        for seq, payload, n in frames(p):
            assert ring.write(seq, payload, n), "ring full"
        ring.close()
    store = SpoolStore(url, data_dir)
    assert store.create_run(run_id, ANCHOR[0], "fleet", f"host-{run_id}")
    ingest = Ingestor(store, run_id, run_dir)
    ingest.drain_to_end()
    ingest.finish_all()
    totals = ingest.totals()
    store.set_run_status(run_id, "finished")
    store.final_forward_s = 120
    store.close()
    db = sqlite3.connect(spool_path(data_dir))
    waiting = db.execute("SELECT COUNT(*) FROM spool_log").fetchone()[0]
    print(json.dumps({"run_id": run_id, "stored_events": totals["stored_events"],
                      "waiting": waiting}))


if __name__ == "__main__":
    main()
