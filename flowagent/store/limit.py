"""What a store keeps: the retention of full session trees within a run, and the data
directory's size limit across runs (oldest runs pruned first, and the pruning reported).
Both stores apply the same settings (``retention_sessions`` and ``max_data_size`` in the
configuration), through the same :class:`~flowagent.store.api.Store` methods.

Retention (:class:`Retention`): aggregates are kept for every session; full trees are kept
for exemplars of every flow variant and error cluster, failed sessions up to a cap, and a
recent window; older trees are pruned to their summary row.

Size limit (:func:`enforce`): the size counted is what the data directory holds for
flowagent: the store's bytes in use (:meth:`Store.stored_bytes`; SQLite reuses freed pages,
so its file stays near the limit instead of shrinking) plus every file under ``runs/`` (rings not yet drained, sidecar logs).
An ended run's files no longer change: their size is counted once and kept in
``runs/.sizes``, so a run's end does not walk the directories of the thousands of runs the
default limit lets accumulate.
When it is over the limit after a run, whole ended runs are deleted, oldest first, until it
fits. Never deleted: the run that just ended, a run still recording, and a run whose processes
outlived it (its rings wait for ``flowagent sidecar --resume``). One run larger than the limit
is kept whole: the limit bounds what accumulates, the per-run retention bounds one run.

A shared PostgreSQL store (:func:`enforce_server`): the same limit bounds the server's
database, applied by each sidecar as its run ends (after its spool was forwarded), over the
whole fleet's ended runs, oldest first; a run's partitions are dropped whole (no row-by-row
delete, no vacuum debt). Every host applies the limit it is configured with, so a fleet
should configure one (``max_data_size`` in the shared configuration).
"""

from __future__ import annotations

import os

from ..protocol import rundir
from ..record import NamedTuple
from .api import Store, kind_of, sqlite_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Container


# Named tuples, not dataclasses: the sidecar loads this module at start, and
# ``dataclasses`` (with the ``inspect`` it imports) is a fifth of an empty run's sidecar.
class Retention(NamedTuple):
    """Which full session trees are kept (aggregates are always kept for every session).

    Every session that showed a new flow variant or a new error cluster is kept as an
    exemplar; sessions that failed are kept up to ``error_cap``; of the rest, the most recent
    ``recent`` are kept and older ones are pruned to their summary row.
    """

    recent: int = 10_000
    error_cap: int = 1_000


class Pruned(NamedTuple):
    runs: tuple[str, ...] = ()
    freed_bytes: int = 0
    size_bytes: int = 0   # what the data directory holds afterwards


def data_dir_of(url: str, run_dir: str) -> str:
    """The data directory whose size a run's limit bounds: the SQLite file's directory, or
    for a store elsewhere (a server) the directory holding the run's own files."""
    if kind_of(url) == "sqlite":
        return os.path.dirname(os.path.abspath(sqlite_path(url)))
    return os.path.dirname(os.path.dirname(os.path.abspath(run_dir)))


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


SIZES = ".sizes"  # in runs/: "<run id> <directory's mtime_ns> <bytes>" per ended run


def runs_bytes(runs: str, settled: Container[str] = ()) -> int:
    """Disk space of the files under ``runs``. A run in ``settled`` (ended, nothing of it
    still recording or waiting for a resume) is walked once: its size is kept in
    ``runs/.sizes`` with its directory's mtime, and taken from there while that is unchanged."""
    try:
        entries = list(os.scandir(runs))
    except OSError:
        return 0
    kept = _read_sizes(os.path.join(runs, SIZES))
    fresh: dict[str, tuple[int, int]] = {}
    total = 0
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_blocks * 512
                continue
            if entry.name not in settled:
                total += tree_bytes(entry.path)
                continue
            stamp = entry.stat(follow_symlinks=False).st_mtime_ns
            hit = kept.get(entry.name)
            size = hit[1] if hit is not None and hit[0] == stamp else tree_bytes(entry.path)
        except OSError:
            continue
        fresh[entry.name] = (stamp, size)
        total += size
    if fresh != kept:
        _write_sizes(os.path.join(runs, SIZES), fresh)
    return total


def _read_sizes(path: str) -> dict[str, tuple[int, int]]:
    sizes: dict[str, tuple[int, int]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    sizes[parts[0]] = (int(parts[1]), int(parts[2]))
    except (OSError, ValueError):
        pass  # none yet, or unreadable: every ended run is walked again
    return sizes


def _write_sizes(path: str, sizes: dict[str, tuple[int, int]]) -> None:
    """Replaced whole (another sidecar ending at the same time writes the same entries);
    removed when no ended run is left."""
    tmp = f"{path}.{os.getpid()}"
    try:
        if not sizes:
            os.unlink(path)
            return
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{name} {stamp} {size}\n" for name, (stamp, size) in sizes.items())
        os.replace(tmp, path)
    except OSError:  # a read-only data directory: counted by walking, as before
        try:
            os.unlink(tmp)
        except OSError:
            pass


def data_bytes(store: Store, data_dir: str | None, settled: Container[str] = ()) -> int:
    """The store's bytes, plus the run files of ``data_dir`` (None: a server's store only);
    ``settled``: the runs whose files no longer change (:func:`runs_bytes`)."""
    return store.stored_bytes() + (runs_bytes(os.path.join(data_dir, rundir.RUNS), settled)
                                   if data_dir else 0)


def enforce(store: Store, data_dir: str | None, limit: int, current: str) -> Pruned:
    """Delete the oldest ended runs until the data directory (None: the store alone) is
    within ``limit`` bytes (0: no limit)."""
    prunable = store.prunable_runs(current)
    settled = set(prunable)
    size = data_bytes(store, data_dir, settled)
    if limit <= 0 or size <= limit:
        return Pruned(size_bytes=size)
    pruned: list[str] = []
    start = size
    for run_id in prunable:
        store.delete_run(run_id)
        if data_dir and run_id and os.sep not in run_id and run_id not in (".", ".."):
            import shutil  # only when a run is pruned: not on every sidecar's start

            shutil.rmtree(rundir.run_dir(data_dir, run_id), ignore_errors=True)
        pruned.append(run_id)
        settled.discard(run_id)
        size = data_bytes(store, data_dir, settled)
        if size <= limit:
            break
    return Pruned(tuple(pruned), max(start - size, 0), size)


def enforce_server(url: str, limit: int, current: str) -> Pruned:
    """The size limit on a shared server's database (see the module doc); a store that is
    not shared has nothing to do here."""
    if limit <= 0 or kind_of(url) == "sqlite":
        return Pruned()
    from .api import open_store

    server = open_store(url, readonly=True)
    try:
        return enforce(server, None, limit, current)
    finally:
        server.close()
