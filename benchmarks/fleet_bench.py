"""A fleet into one PostgreSQL: H simulated hosts, each a sidecar with N sessions.

Each host is a process with its own data directory running the real sidecar path: synthetic
but realistic ring frames (the frames of ``retention_bench.py``: a few calls per session, a
handful of flow variants, a small share of failures) drained by the real
:class:`~flowagent.sidecar.ingest.Ingestor` into the ``postgresql://`` store's writer (the
local spool) while its forwarder sends every change to the one server, all hosts at once.
Then the readers' questions are timed against the server holding every host's sessions:
the merged graph of all runs (what ``flowagent export --format json`` builds), the sessions
page (first and a deep page, with its capped count) and the architecture page's data.

    .venv/bin/python benchmarks/fleet_bench.py                       # 8 hosts x 100 000
    .venv/bin/python benchmarks/fleet_bench.py --hosts 8 --sessions 10000
    .venv/bin/python benchmarks/fleet_bench.py --url postgresql://user@host/db

Without ``--url`` a server is started in a temporary directory (tests/pgserver.py). Prints
a JSON line and a Markdown table. Figures are wall-clock on whatever machine runs it: read
them as rates and ratios (the same run's SQLite ingest of one host is the baseline).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from retention_bench import FUNCS, session_calls  # noqa: E402

from flowagent.protocol.ring import RingWriter  # noqa: E402
from flowagent.protocol.wire import VERSION, Encoder  # noqa: E402


def _frames(sessions: int, batch: int, pk: int, seed: int):
    """(seq, payload, events) of one process's ring, ``batch`` sessions a frame."""
    enc = Encoder()
    rnd = random.Random(seed)
    seq, ses, t, done = 0, 1, 10**12, 0
    defs = [[fid, mod, name, "svc.py", fid, ["x"], "function"] for fid, mod, name in FUNCS]
    strings = [[7, ["dict{id:int}"]], [8, "dict{ok:bool}"], [9, "KeyError"]]
    while done < sessions:
        n = min(batch, sessions - done)
        calls, starts = [], []
        for _ in range(n):
            starts.append([ses, 1, t, 1, "MainThread"])
            c, ses = session_calls(ses, t, rnd)
            calls.extend(c)
            t += 200_000
        seq += 1
        payload = enc.encode({"v": VERSION, "pk": pk, "pid": 1, "seq": seq,
                              "anchor": [time.time_ns(), 10**12], "defs": defs if seq == 1
                              else [], "strings": strings if seq == 1 else [],
                              "starts": starts, "names": [], "threads": [],
                              "agent_errors": 0}, calls)
        yield seq, payload, len(calls)
        done += n


def host(index: int, url: str | None, base: str, sessions: int, batch: int,
         out: "mp.Queue[dict]") -> None:
    """One host's sidecar: ingest every frame, then wait for the forwarder to finish."""
    from flowagent.sidecar.ingest import Ingestor
    from flowagent.store.limit import Retention

    data_dir = os.path.join(base, f"host{index}")
    run_id = f"bench-host{index}"
    run_dir = os.path.join(data_dir, "runs", run_id)
    os.makedirs(os.path.join(run_dir, "rings"))
    if url:
        from flowagent.store.postgres import SpoolStore
        store = SpoolStore(url, data_dir)
    else:
        from flowagent.store.sqlite import SQLiteStore
        store = SQLiteStore(os.path.join(data_dir, "flowagent.db"))
    store.create_run(run_id, time.time_ns(), "bench", f"host{index}")
    pk = 0x1000 + index
    ring = RingWriter(os.path.join(run_dir, "rings", f"1-{pk:012x}.ring"), 64 << 20, 1, 0,
                      pk, time.time_ns(), {"argv": ["bench"], "host": f"host{index}"})
    ingest = Ingestor(store, run_id, run_dir, Retention(recent=10_000))
    t0 = time.perf_counter()
    events = 0
    for seq, payload, n in _frames(sessions, batch, pk, index):
        while not ring.write(seq, payload, n):
            ingest.poll()
        events += n
        if seq % 4 == 0:
            while ingest.poll():
                pass
            ingest.prune()
    ingest.drain_to_end()
    ingest.finish_all()
    ingest.prune(force=True)
    store.set_run_status(run_id, "finished")
    ingested = time.perf_counter() - t0
    waiting = 0
    if url:
        store.forwarder.stop()
        waiting = store.forwarder.drain(3600)
    forwarded = time.perf_counter() - t0
    store.forwarder.close() if url else store.close()
    out.put({"host": index, "events": events, "ingest_s": ingested, "done_s": forwarded,
             "waiting": waiting})


def fleet(url: str | None, hosts: int, sessions: int, batch: int) -> dict:
    base = tempfile.mkdtemp(prefix="fa-fleet-")
    out: "mp.Queue[dict]" = mp.Queue()
    procs = [mp.Process(target=host, args=(i, url, base, sessions, batch, out))
             for i in range(hosts)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get(timeout=7200) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    events = sum(r["events"] for r in results)
    return {"hosts": hosts, "sessions": hosts * sessions, "events": events, "wall_s": wall,
            "sessions_per_s": hosts * sessions / wall, "events_per_s": events / wall,
            "waiting": sum(r["waiting"] for r in results), "per_host": results}


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def synthesize(url: str, source: str, total: int) -> str:
    """A run of ``total`` sessions made on the server from ``source``'s rows (copies with new
    ids and times, their trees pruned: the read paths of the sessions and architecture pages
    at a size this machine cannot ingest in a benchmark's time)."""
    import psycopg

    from flowagent.store.pgconn import ensure_partitions

    run = "bench-synth"
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            ensure_partitions(conn, run)
        k = conn.execute("SELECT COUNT(*) FROM sessions WHERE run_id=%s", (source,)).fetchone()[0]
        reps = -(-total // k)
        with conn.transaction():
            conn.execute(
                "INSERT INTO sessions(sid, session_id, run_id, name, root_fid, pid, pk, thread, "
                "result, complete, started_ns, ended_ns, duration_ns, calls, errors, variant, "
                "tree_kept, fids, raised) SELECT r.n::bigint * %s + s.rn, 'synth' || r.n || "
                "'-' || s.session_id, %s, s.name, s.root_fid, s.pid, s.pk, s.thread, s.result, "
                "s.complete, s.started_ns + r.n::bigint * 1000000000, "
                "s.ended_ns + r.n::bigint * 1000000000, s.duration_ns, s.calls, s.errors, "
                "s.variant, 0, s.fids, s.raised FROM generate_series(0, %s) r(n) CROSS JOIN "
                "(SELECT *, row_number() OVER (ORDER BY sid) AS rn FROM sessions "
                "WHERE run_id=%s) s WHERE r.n::bigint * %s + s.rn <= %s",
                (k, run, reps, source, k, total))
            for table in ("functions", "graph_nodes", "graph_edges", "shape_counts", "paths",
                          "variants", "error_clusters", "processes"):
                cols = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name=%s "
                    "AND column_name<>'run_id' ORDER BY ordinal_position", (table,))]
                names = ", ".join(f'"{c}"' for c in cols)
                conn.execute(f"INSERT INTO {table}(run_id, {names}) SELECT %s, {names} "
                             f"FROM {table} WHERE run_id=%s", (run, source))
            conn.execute("INSERT INTO runs(run_id, started_ns, status, host) "
                         "VALUES(%s, 0, 'finished', 'synthetic')", (run,))
        conn.execute("ANALYZE")
    return run


def reads(url: str, big_run: str | None = None) -> dict:
    from flowagent.model.graph import from_aggregates, merge_all, to_contract
    from flowagent.store.postgres import PostgresStore
    from flowagent.store import queries

    store = PostgresStore(url)
    runs = [r["run_id"] for r in store.runs()]

    def merged() -> int:
        g = merge_all(from_aggregates(store.aggregates(r)) for r in runs)
        return len(to_contract(g)["nodes"])

    out: dict = {"runs": len(runs), "sessions_stored": store.count_sessions()}
    out["merged_graph_s"], out["merged_nodes"] = timed(merged)
    first = big_run or runs[0]
    out["page_run_sessions"] = store.count_sessions(first)
    out["sessions_page_s"], _ = timed(lambda: store.sessions(first, limit=50))
    out["sessions_deep_page_s"], _ = timed(lambda: store.sessions(first, limit=50,
                                                                   offset=50_000))
    out["sessions_count_s"], _ = timed(lambda: queries.session_roots(store, first))
    out["all_sessions_page_s"], _ = timed(lambda: store.sessions(None, order="-started",
                                                                 limit=50))
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--sessions", type=int, default=100_000, help="per host")
    p.add_argument("--batch", type=int, default=100, help="sessions per ring frame")
    p.add_argument("--url", help="an existing PostgreSQL (default: start one)")
    p.add_argument("--page-sessions", type=int, default=1_000_000,
                   help="sessions of the run the page queries read (copied on the server)")
    a = p.parse_args()
    server = None
    url = a.url
    if url is None:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from pgserver import PgServer, find_bindir
        server = PgServer(find_bindir() or "")
        server.start()
        url = server.create_database("fleet")
    try:
        baseline = fleet(None, 1, min(a.sessions, 20_000), a.batch)
        result = fleet(url, a.hosts, a.sessions, a.batch)
        big = synthesize(url, "bench-host0", a.page_sessions) if a.page_sessions else None
        result["reads"] = reads(url, big)
        result["baseline_sqlite_1_host"] = {k: baseline[k] for k in (
            "sessions", "events", "wall_s", "sessions_per_s", "events_per_s")}
    finally:
        if server is not None:
            server.destroy()
    print(json.dumps({k: v for k, v in result.items() if k != "per_host"}))
    r = result["reads"]
    print(f"| hosts x sessions | events | wall | sessions/s | events/s | merged graph | "
          f"sessions page, run of {r['page_run_sessions']:,} (first / offset 50k) / all runs "
          f"({r['sessions_stored']:,}) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| {a.hosts} x {a.sessions:,} | {result['events']:,} | {result['wall_s']:.0f} s | "
          f"{result['sessions_per_s']:,.0f} | {result['events_per_s']:,.0f} | "
          f"{r['merged_graph_s'] * 1000:.0f} ms | {r['sessions_page_s'] * 1000:.0f} / "
          f"{r['sessions_deep_page_s'] * 1000:.0f} / {r['all_sessions_page_s'] * 1000:.0f} ms |")
    b = result["baseline_sqlite_1_host"]
    print(f"baseline, one host into SQLite only: {b['sessions_per_s']:,.0f} sessions/s, "
          f"{b['events_per_s']:,.0f} events/s")


if __name__ == "__main__":
    main()
