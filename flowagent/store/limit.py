"""The data directory's size limit: oldest runs pruned first, and the pruning reported.

The size counted is what the data directory holds for flowagent: the database's pages in use
(:meth:`SQLiteStore.stored_bytes`; freed pages are reused, so the file stays near the limit
instead of shrinking) plus every file under ``runs/`` (rings not yet drained, sidecar logs).
When it is over the limit after a run, whole ended runs are deleted, oldest first, until it
fits. Never deleted: the run that just ended, a run still recording, and a run whose processes
outlived it (its rings wait for ``flowagent sidecar --resume``). One run larger than the limit
is kept whole: the limit bounds what accumulates, the per-run retention bounds one run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from .sqlite import SQLiteStore


@dataclass(frozen=True)
class Pruned:
    runs: tuple[str, ...] = ()
    freed_bytes: int = 0
    size_bytes: int = 0   # what the data directory holds afterwards


def tree_bytes(path: str) -> int:
    """Disk space of the files under ``path`` (allocated blocks: rings are preallocated)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def data_bytes(store: SQLiteStore, data_dir: str) -> int:
    return store.stored_bytes() + tree_bytes(os.path.join(data_dir, "runs"))


def enforce(store: SQLiteStore, data_dir: str, limit: int, current: str) -> Pruned:
    """Delete the oldest ended runs until the data directory is within ``limit`` bytes
    (0: no limit)."""
    size = data_bytes(store, data_dir)
    if limit <= 0 or size <= limit:
        return Pruned(size_bytes=size)
    pruned: list[str] = []
    start = size
    for run_id in store.prunable_runs(current):
        store.delete_run(run_id)
        if run_id and os.sep not in run_id and run_id not in (".", ".."):
            shutil.rmtree(os.path.join(data_dir, "runs", run_id), ignore_errors=True)
        pruned.append(run_id)
        size = data_bytes(store, data_dir)
        if size <= limit:
            break
    return Pruned(tuple(pruned), max(start - size, 0), size)
