"""The sidecar process: ``python -m flowagent.sidecar --run-dir DIR --db PATH --run-id ID``.

Announces readiness with one line ``READY <pid>`` on stdout (the launcher waits for it), then
drains every ring of the run until its stdin closes (the launcher closes it when the program
has ended, and a launcher that dies closes it too). Then it drains one last time, stores the
sessions that never finished as incomplete, writes the run's totals and prints them as one
JSON line on stdout.

``--resume`` restarts ingestion for an existing run (after a sidecar crash): positions come
from the store, so nothing is stored twice.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from ..store.sqlite import SQLiteStore
from .ingest import Ingestor


def _watch_stdin(done: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(1):
            pass
    except (OSError, ValueError):
        pass
    done.set()


def run(run_dir: str, db: str, run_id: str, poll_s: float, resume: bool, follow: bool) -> dict:
    store = SQLiteStore(db)
    if not resume:
        with store.transaction():
            store.db.execute("INSERT OR IGNORE INTO runs(run_id, started_ns, status) "
                             "VALUES(?,?,'running')", (run_id, time.time_ns()))
    ingest = Ingestor(store, run_id, run_dir)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher forwards ^C to the program only
    if follow:
        threading.Thread(target=_watch_stdin, args=(done,), daemon=True).start()
    else:
        done.set()
    sys.stdout.write(f"READY {os.getpid()}\n")
    sys.stdout.flush()
    while not done.is_set():
        if ingest.poll() == 0:
            done.wait(poll_s)
    # Final drain: rings are read until two consecutive polls find nothing new.
    while ingest.poll():
        pass
    incomplete = ingest.finish_all()
    totals = ingest.totals()
    with store.transaction():
        db_ = store.db
        sessions = db_.execute("SELECT COUNT(*), COALESCE(SUM(calls),0), COALESCE(SUM(errors),0) "
                               "FROM sessions WHERE run_id=?", (run_id,)).fetchone()
        incomplete_total = db_.execute("SELECT COUNT(*) FROM sessions WHERE run_id=? AND "
                                       "complete=0", (run_id,)).fetchone()[0]
        db_.execute(
            "UPDATE runs SET sessions=?, calls=?, errors=?, incomplete_sessions=?, "
            "produced_events=?, dropped_events=?, dropped_batches=?, corrupt_frames=?, "
            "duplicate_frames=?, agent_errors=?, processes=? WHERE run_id=?",
            (sessions[0], sessions[1], sessions[2], incomplete_total,
             totals["produced_events"] + totals["dropped_events"], totals["dropped_events"],
             totals["dropped_batches"], totals["corrupt_frames"], totals["duplicate_frames"],
             totals["agent_errors"], totals["processes"], run_id))
    store.close()
    summary = dict(totals, sessions=sessions[0], calls=sessions[1], errors=sessions[2],
                   incomplete_sessions=incomplete_total, newly_incomplete=incomplete)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowagent.sidecar")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--poll-ms", type=float, default=20.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--once", action="store_true", help="drain what is there and exit")
    a = p.parse_args(argv)
    summary = run(a.run_dir, a.db, a.run_id, a.poll_ms / 1000.0, a.resume, not a.once)
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
