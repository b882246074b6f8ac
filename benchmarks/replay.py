"""A finished run's rings replayed into a fresh store, as the sidecar ingests them: the
shared part of ``ingest_replay.py`` (ingest rate) and ``otlp_ingest.py`` (ingest with OTLP
output).

The rings are copied into a fresh run directory with the consumer tail reset to 0, a fresh
SQLite store gets the run's row (as the sidecar makes it), and
``flowagent.sidecar.ingest.Ingestor`` drains them exactly as the sidecar's loop does: poll
until nothing is left, pruning as it goes, then store the sessions still open.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flowagent.sidecar.ingest import Ingestor
from flowagent.store.sqlite import SQLiteStore

import wire

RUN_ID = "replay"


@dataclass
class Replay:
    store: SQLiteStore
    run_dir: str
    db: str
    run_id: str = RUN_ID

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.run_id, self.run_dir)


@contextmanager
def fresh_run(rings: list[str]) -> Iterator[Replay]:
    """A fresh data directory holding copies of ``rings`` (tails at 0) and an empty store
    with the run's row; removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="fa-replay-")
    try:
        run_dir = os.path.join(tmp, "runs", RUN_ID)
        os.makedirs(os.path.join(run_dir, "rings"))
        for path in rings:
            dst = os.path.join(run_dir, "rings", os.path.basename(path))
            shutil.copyfile(path, dst)
            wire.reset_tail(dst)
        db = os.path.join(tmp, "flowagent.db")
        store = SQLiteStore(db)
        store.create_run(RUN_ID, time.time_ns(), None, None)
        try:
            yield Replay(store, run_dir, db)
        finally:
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def drain(ingest: Ingestor, sink: Callable[[list[str]], None] | None = None) -> int:
    """Everything in the rings, as the sidecar's loop and its end of run store it; returns
    the events stored."""
    if sink is not None:
        ingest.finished_sink = sink
    while ingest.poll():
        ingest.prune()
    ingest.finish_all()
    ingest.prune(force=True)
    return ingest.totals()["stored_events"]
