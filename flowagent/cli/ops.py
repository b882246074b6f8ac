"""``flowagent control`` and ``flowagent sidecar``: acting on a run in progress or cut short.
"""

from __future__ import annotations

import os

from ..errors import UsageError
from ..protocol import rundir
from .common import _one_line_json, _run_id

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import TextIO


def cmd_control(ns: argparse.Namespace, out: TextIO) -> int:
    from ..config import load_config
    from ..sidecar import control
    from ..store.api import open_store, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", ns.data_dir), ("store", getattr(ns, "store", None))) if v})
    store = open_store(store_url(cfg.data_dir, cfg.store), readonly=True)
    run_id = _run_id(store, ns.run)
    run = store.run(run_id)
    if run and run.get("ended_ns"):
        raise UsageError(f"run {run_id} has ended; control applies to a run in progress")
    if ns.sample_rate is not None and not 0.0 <= ns.sample_rate <= 1.0:
        raise UsageError("--sample-rate takes a fraction between 0 and 1")
    paused = True if ns.pause else False if ns.resume else None
    state = control.write(rundir.run_dir(cfg.data_dir, run_id), paused, ns.sample_rate)
    out.write(f"run {run_id}: {_one_line_json(state)}\n")
    return 0


def cmd_sidecar(ns: argparse.Namespace, out: TextIO) -> int:
    """Store what a run's rings still hold after its sidecar died, or when it never started
    (the run then has no row in the store yet: it is made now)."""
    from ..config import load_config
    from ..sidecar.__main__ import run as run_sidecar
    from ..store.api import kind_of, open_store, sqlite_path, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", ns.data_dir), ("store", getattr(ns, "store", None))) if v})
    db = store_url(cfg.data_dir, cfg.store)
    rings = rundir.rings_dir(rundir.run_dir(cfg.data_dir, ns.resume))
    never_started = os.path.isdir(rings) and not (
        (kind_of(db) != "sqlite" or os.path.exists(sqlite_path(db)))
        and open_store(db, readonly=True).run(ns.resume) is not None)
    run_id = ns.resume if never_started else _run_id(open_store(db, readonly=True), ns.resume)
    run_dir = rundir.run_dir(cfg.data_dir, run_id)
    summary = run_sidecar(run_dir, db, run_id, 0.02, resume=not never_started, follow=False)
    if never_started:
        store = open_store(db, data_dir=cfg.data_dir)
        store.set_run_status(run_id, "sidecar-failed")
        store.close()
    out.write(_one_line_json(summary) + "\n")
    return 0
