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
import gc
import json
import os
import signal
import sys
import threading
import time

from ..errors import StoreError
from ..store.lineage import LINKED
from ..store.sqlite import SQLiteStore
from .pending import still_running
from .retention import Retention


def _watch_stdin(done: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(1):
            pass
    except (OSError, ValueError):
        pass
    done.set()


def tune_gc() -> None:
    """Collect the youngest generation every 100 000 allocations instead of 700.

    The sidecar decodes batches into tens of thousands of tuples at a time and folds them
    into a few small trees: with the default threshold the collector runs dozens of times per
    batch over objects that hold no cycles (reference counting frees them). ~10% of ingest
    time, for a young generation of at most a batch.
    """
    gc.set_threshold(100_000, 50, 50)


def _raise_soft_limits() -> None:
    """The sidecar is not the program: the program's soft limits on file size and address
    space (``ulimit -S``) must not stop its recording from being stored."""
    try:
        import resource
    except ImportError:
        return
    for limit in (resource.RLIMIT_FSIZE, resource.RLIMIT_AS, resource.RLIMIT_DATA):
        try:
            soft, hard = resource.getrlimit(limit)
            if soft != hard:
                resource.setrlimit(limit, (hard, hard))
        except (OSError, ValueError):
            pass


def _watch_parent(done: threading.Event, parent: int, poll_s: float) -> None:
    """An orphaned sidecar ends: if the launcher is gone (killed, and its stdin pipe kept
    open by someone else), finish the run as if it had said so."""
    while not done.wait(max(poll_s * 25, 0.5)):
        if os.getppid() != parent:
            done.set()


# How long the end of a run waits for processes that are still running to end by themselves.
SETTLE_S = 1.5


def _add_retired(store: SQLiteStore, run_id: str, seen: set[str], totals: dict) -> None:
    """A resumed run's totals also count the processes whose rings were drained and
    removed before: their counters live in the store only."""
    for row in store.db.execute(
            "SELECT pk, produced_events, dropped_events, dropped_batches, corrupt_frames, "
            "duplicate_frames, agent_errors, stored_events FROM processes WHERE run_id=?",
            (run_id,)).fetchall():
        if row[0] in seen:
            continue
        totals["processes"] += 1
        for key, value in zip(("produced_events", "dropped_events", "dropped_batches",
                               "corrupt_frames", "duplicate_frames", "agent_errors",
                               "stored_events"), row[1:]):
            totals[key] += value or 0


def run(run_dir: str, db: str, run_id: str, poll_s: float, resume: bool, follow: bool,
        retention: Retention = Retention(), hook_specs: tuple[str, ...] = (),
        max_data_size: int = 0, otlp: dict[str, str] | None = None) -> dict:
    tune_gc()
    _raise_soft_limits()
    store = SQLiteStore(db)
    if not resume:
        with store.transaction():
            made = store.db.execute("INSERT OR IGNORE INTO runs(run_id, started_ns, status) "
                                    "VALUES(?,?,'running')", (run_id, time.time_ns())).rowcount
        if not made:  # never write one run's records into another's
            raise StoreError(f"run {run_id} already exists in {db}; start the run again "
                             "(it gets a new id)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher forwards ^C to the program only
    if follow:
        threading.Thread(target=_watch_stdin, args=(done,), daemon=True).start()
        threading.Thread(target=_watch_parent, args=(done, os.getppid(), poll_s),
                         daemon=True).start()
    else:
        done.set()
    # READY as soon as the store is open: the launcher holds the program back until then,
    # and nothing below is needed before the first poll (the rings keep what the program
    # writes meanwhile). Hooks (an entry-point scan), psutil and the ingestion machinery
    # load while the program starts.
    sys.stdout.write(f"READY {os.getpid()}\n")
    sys.stdout.flush()
    from .control import Control
    from .hooks import Hooks
    from .ingest import Ingestor
    from .sampler import ProcessSampler

    hooks = Hooks(list(hook_specs))
    ingest = Ingestor(store, run_id, run_dir, retention, hooks if hooks else None)
    control = Control(run_dir)
    sender = None
    if otlp and otlp.get("endpoint"):
        from .otlp_sender import SenderProcess

        sender = SenderProcess(otlp["endpoint"], db, otlp.get("service") or "python",
                               otlp.get("host") or None)
        ingest.finished_sink = sender.offer
    sampler = ProcessSampler(store, run_id)
    while not done.is_set():
        control.apply(ingest.procs.values())
        sampler.maybe_sample(ingest.procs.values())
        stored = ingest.poll()
        ingest.prune()
        if stored == 0:
            done.wait(poll_s)
    # Processes still running (a daemon that outlived the program) keep their sessions open
    # and their rings: what they record from now on is stored by a later --resume. Helpers
    # that end just after the program (a pool's workers, multiprocessing's resource
    # tracker) are waited for briefly, and what they flush on their way out is stored now.
    settle = time.monotonic() + (SETTLE_S if follow else 0.0)
    while True:
        ingest.drain_to_end()
        pending = {pk: p for pk, p in ingest.procs.items() if p.reader.producer_alive()}
        running = still_running(run_id, ((p.pid, p.info.get("argv", []), pk in pending)
                                         for pk, p in ingest.procs.items()))
        if not running or time.monotonic() >= settle:
            break
        time.sleep(0.05)
    incomplete = ingest.finish_all(frozenset(pending))
    # Before the final prune: queued sessions are read back from their kept trees.
    otlp_totals = sender.close() if sender is not None else {}
    pruned = ingest.prune(force=True)
    totals = ingest.totals()
    if resume:
        _add_retired(store, run_id, set(ingest.procs), totals)
    for proc in ingest.procs.values():
        proc.reader.retire_if_done(producer_gone=True)
    with store.transaction():
        db_ = store.db
        sessions = db_.execute(  # the sessions of child processes are parts of others
            "SELECT COALESCE(SUM(NOT " + LINKED.format(alias="sessions.") + "),0), COALESCE(SUM(calls),0), "
            "COALESCE(SUM(errors),0) FROM sessions WHERE run_id=?", (run_id,)).fetchone()
        incomplete_total = db_.execute("SELECT COUNT(*) FROM sessions WHERE run_id=? AND "
                                       "complete=0", (run_id,)).fetchone()[0]
        db_.execute(
            "UPDATE runs SET sessions=?, calls=?, errors=?, incomplete_sessions=?, "
            "produced_events=?, dropped_events=?, dropped_batches=?, corrupt_frames=?, "
            "duplicate_frames=?, agent_errors=?, processes=?, sampled_out=?, hook_errors=?, "
            "hook_error=?, pruned_sessions=pruned_sessions+? WHERE run_id=?",
            (sessions[0], sessions[1], sessions[2], incomplete_total,
             totals["produced_events"] + totals["dropped_events"], totals["dropped_events"],
             totals["dropped_batches"], totals["corrupt_frames"], totals["duplicate_frames"],
             totals["agent_errors"], totals["processes"], totals["sampled_out"], hooks.errors,
             hooks.first_error or None, pruned, run_id))
        if resume:
            db_.execute("UPDATE runs SET status=CASE WHEN ? THEN 'pending' WHEN "
                        "status='pending' THEN 'finished' ELSE status END WHERE run_id=?",
                        (bool(running), run_id))
        if otlp_totals:
            db_.execute("UPDATE runs SET otlp_sessions=?, otlp_spans=?, otlp_undelivered=? "
                        "WHERE run_id=?", (otlp_totals["otlp_sessions"],
                                           otlp_totals["otlp_spans"],
                                           otlp_totals["otlp_undelivered"], run_id))
    summary = dict(totals, sessions=sessions[0], calls=sessions[1], errors=sessions[2],
                   incomplete_sessions=incomplete_total, newly_incomplete=incomplete,
                   hook_errors=hooks.errors, hook_error=hooks.first_error,
                   pending=running, **otlp_totals)
    if max_data_size:
        from ..store.limit import enforce

        kept = enforce(store, os.path.dirname(os.path.abspath(db)), max_data_size, run_id)
        summary.update(pruned_runs=len(kept.runs), pruned_bytes=kept.freed_bytes,
                       data_bytes=kept.size_bytes)
    if hooks:
        hooks.run_end(dict(summary, run_id=run_id))
        if hooks.errors != summary["hook_errors"]:
            with store.transaction():
                store.db.execute("UPDATE runs SET hook_errors=?, hook_error=? WHERE run_id=?",
                                 (hooks.errors, hooks.first_error, run_id))
            summary.update(hook_errors=hooks.errors, hook_error=hooks.first_error)
    store.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flowagent.sidecar")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--poll-ms", type=float, default=20.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--once", action="store_true", help="drain what is there and exit")
    p.add_argument("--retention", type=int, default=Retention.recent)
    p.add_argument("--error-cap", type=int, default=Retention.error_cap)
    p.add_argument("--hook", action="append", default=[])
    p.add_argument("--max-data-size", type=int, default=0,
                   help="bytes the data directory may hold; oldest runs are pruned (0: no limit)")
    p.add_argument("--otlp-endpoint", default="")
    p.add_argument("--otlp-service", default="")
    p.add_argument("--otlp-host", default="")
    a = p.parse_args(argv)
    otlp = {"endpoint": a.otlp_endpoint, "service": a.otlp_service, "host": a.otlp_host}
    summary = run(a.run_dir, a.db, a.run_id, a.poll_ms / 1000.0, a.resume, not a.once,
                  Retention(a.retention, a.error_cap), tuple(a.hook), a.max_data_size,
                  otlp)
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
