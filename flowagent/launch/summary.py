"""The end of a run: its row in the store and the summary lines printed after the program.
"""

from __future__ import annotations

import errno
import os
import sys

from ..errors import StoreError
from ..protocol import rundir

TYPE_CHECKING = False  # importing typing costs ~3 ms of every run's start-up
if TYPE_CHECKING:
    from typing import Any

    from ..config import Config
    from .target import Target


def _text(s: str) -> str:
    """A file-system string as storable text: bytes that are not UTF-8 (a directory named in
    Latin-1) are shown as \\xNN escapes instead of failing the store."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _run_row(target: Target, cwd: str, backend: str) -> dict[str, Any]:
    """What only the launcher knows about the run, a :class:`~flowagent.store.api.RunEnd`'s
    fields, for the sidecar to store with its last write (opening the store here would cost
    every run its schema check and a transaction after the program has ended). Made while
    the program runs, completed by :func:`_ended` when it has ended; the status is the
    writer's to fill in. The command line is masked by whoever stores it (the sidecar,
    whose ``re`` is loaded anyway, or :func:`_finish_run`): masking here would load ``re``
    and ``enum`` (~30 M instructions) beside the starting program and sidecar."""
    return {"argv": [target.describe(), *target.args], "cwd": _text(cwd),
            "backend": backend, "ended_ns": 0, "exit_code": 0, "status": ""}


def _ended(row: dict[str, Any], rc: int) -> dict[str, Any]:
    """:func:`_run_row` with the end's time and the program's exit status."""
    import time

    return dict(row, ended_ns=time.time_ns(), exit_code=rc)


def _finish_run(cfg: Config, run_id: str, end: dict[str, Any],
                summary: dict[str, Any] | None) -> None:
    """What only the launcher knows about the run, into its row (the sidecar made the row),
    when the sidecar did not store it."""
    from ..redact import mask_argv
    from ..store.api import RunEnd, open_store, store_url

    status = ("sidecar-failed" if summary is None
              else "pending" if summary.get("pending") else "finished")
    try:
        store = open_store(store_url(cfg.data_dir, cfg.store), data_dir=cfg.data_dir)
        store.finish_run(run_id, RunEnd(**dict(end, argv=tuple(mask_argv(end["argv"])),
                                               status=status)))
        store.close()
        note = getattr(store, "forward_note", None)  # a shared store's spool still waiting
        if note and summary is not None:
            summary["store_note"] = note
    except StoreError as exc:
        sys.stderr.write(f"flowagent: error: could not finish run {run_id} in the store: "
                         f"{exc}\n")


def _data_dir_option(data_dir: str) -> str:
    same = os.path.abspath(data_dir) == os.path.abspath(".flowagent")
    return "" if same else f" --data-dir {os.path.relpath(data_dir)}"


# Causes a ring cannot be made for that are the program's resource limits, not the disk.
_LIMIT_FIXES = {
    os.strerror(errno.EFBIG): "the program's file size limit (ulimit -f) is below the smallest ring "
                     "(68 KiB); raise it to record",
    os.strerror(errno.ENOMEM): "the program's address-space limit (ulimit -v) leaves no room for even "
                     "the smallest ring (64 KiB); raise it to record",
}


def _unrecorded(run_dir: str) -> dict[str, int]:
    """Processes whose ring could not be made, by cause (the agent leaves an empty
    ``<pid>-<key>.ring.<ERRNO>`` marker in their place)."""
    import errno

    causes: dict[str, int] = {}
    try:
        names = os.listdir(rundir.rings_dir(run_dir))
    except OSError:
        return causes
    for name in names:
        base, _, code = name.rpartition(".")
        if base.endswith(rundir.RING_SUFFIX) and code.startswith("E"):
            why = os.strerror(getattr(errno, code, errno.EIO))
            causes[why] = causes.get(why, 0) + 1
    return causes


def _preimported(run_dir: str) -> list[str]:
    """Modules the include globs select that a process had imported before its agent
    started (listed by the agent in ``rings/<pid>.preimported``)."""
    found: set[str] = set()
    rings = rundir.rings_dir(run_dir)
    try:
        names = [n for n in os.listdir(rings) if n.endswith(rundir.PREIMPORTED_SUFFIX)]
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(rings, name), encoding="utf-8") as f:
                found.update(line.strip() for line in f if line.strip())
        except OSError:
            continue
    return sorted(found)


def _sample_rate_note(run_dir: str, configured: float) -> str:
    """The sample rate in force at the end of the run: ``flowagent control`` may have changed
    the configured one while the program ran."""
    from ..sidecar import control

    live = control.read(run_dir).get("sample_rate")
    if isinstance(live, (int, float)) and live != configured:
        return (f"sample rate {live:g} at the end of the run, set with flowagent control; "
                f"{configured:g} at its start")
    return f"sample rate {configured:g}"


def _print_summary(run_id: str, run_dir: str, s: dict[str, Any], cfg: Config) -> None:
    w = sys.stderr.write
    rel = os.path.relpath(cfg.data_dir)
    dd = _data_dir_option(cfg.data_dir)
    w(f"flowagent: run {run_id}: {s['sessions']} sessions, {s['calls']} calls, "
      f"{s['errors']} errors, {s['dropped_events']} dropped events "
      f"({s['processes']} process{'es' if s['processes'] != 1 else ''})\n")
    if s["incomplete_sessions"]:
        w(f"flowagent: {s['incomplete_sessions']} sessions were still open when their process "
          "ended; stored as incomplete\n")
    if s["dropped_events"]:
        w(f"flowagent: {s['dropped_events']} events were dropped because a ring was full; "
          f"raise --ring-size (now {cfg.ring_size // 1024} KiB) to keep them\n")
    if s.get("sampled_out"):
        w(f"flowagent: {s['sampled_out']} sessions were left out by sampling "
          f"({_sample_rate_note(run_dir, cfg.sample_rate)})\n")
    if s.get("profile_displacements"):
        n = s["profile_displacements"]
        w(f"flowagent: the program's own profile function (sys.setprofile, a profiler) "
          f"displaced recording {n} time{'s' if n != 1 else ''}, "
          f"{s.get('profile_displaced_ns', 0) / 1e9:.3f} s in all; what ran meanwhile in "
          f"that thread was not recorded (--backend wrap is not displaced)\n")
    if s.get("hook_errors"):
        w(f"flowagent: {s['hook_errors']} hook failures; first: {s['hook_error']}\n")
    if s.get("otlp_endpoint"):
        w(f"flowagent: OpenTelemetry: {s.get('otlp_sessions', 0)} sessions "
          f"({s.get('otlp_spans', 0)} spans) sent to {s['otlp_endpoint']}")
        if s.get("otlp_undelivered"):
            w(f"; {s['otlp_undelivered']} sessions could not be delivered"
              + (f" (first failure: {s['otlp_error']})" if s.get("otlp_error") else ""))
        w("\n")
    unrecorded = _unrecorded(run_dir)
    for why, n in unrecorded.items():
        fix = _LIMIT_FIXES.get(why, "free some space, lower --ring-size or pass --data-dir "
                               "on a larger filesystem")
        w(f"flowagent: {n} process{'es were' if n != 1 else ' was'} not recorded: no "
          f"ring could be made in {run_dir}/rings ({why}); {fix}\n")
    pending = s.get("pending") or []
    if pending:
        shown = ", ".join(f"pid {p['pid']}" + (f" ({' '.join(p['argv'])[:60]})" if p["argv"]
                                                else "") for p in pending[:3])
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        w(f"flowagent: {len(pending)} process{'es' if len(pending) != 1 else ''} of this run "
          f"{'are' if len(pending) != 1 else 'is'} still running: {shown}{more}; what "
          f"{'they record' if len(pending) != 1 else 'it records'} from now on waits in "
          f"{run_dir}/rings: store it with 'flowagent sidecar --resume {run_id}{dd}' once "
          f"{'they have' if len(pending) != 1 else 'it has'} ended\n")
    if s.get("pruned_runs"):
        n = s["pruned_runs"]
        w(f"flowagent: the data directory was over its {_size(cfg.max_data_size)} limit: "
          f"pruned the {n} oldest run{'s' if n != 1 else ''} ({_size(s['pruned_bytes'])}); "
          "raise --max-data-size (or max_data_size in the config) to keep more\n")
    preimported = _preimported(run_dir)
    if preimported:
        names = ", ".join(preimported[:8]) + (f" and {len(preimported) - 8} more"
                                              if len(preimported) > 8 else "")
        one = len(preimported) == 1
        w(f"flowagent: {names} {'matches' if one else 'match'} --include but "
          f"{'was' if one else 'were'} imported before the agent could instrument "
          f"{'it' if one else 'them'} (the interpreter or the agent loads "
          f"{'it' if one else 'them'} at startup), so nothing of {'it' if one else 'them'} "
          f"was recorded; record {'it' if one else 'them'} with --backend profile (or "
          f"--backend monitor on Python 3.12+), which also see modules imported earlier\n")
    if s["processes"] == 0 and not unrecorded and not pending and not preimported:
        w("flowagent: no Python process of this run was recorded (is the target a Python "
          "program run by this interpreter?)\n")
    if s.get("store_full"):
        w(f"flowagent: the store's disk was full {_times(s['store_full'])} "
          f"({s.get('store_full_s', 0):.1f} s in all): the sidecar waited for room and stored "
          "what the rings kept meanwhile (what a full ring dropped is counted above)\n")
    if s.get("store_note"):
        w(f"flowagent: {s['store_note']}\n")
    where = f"{rel}/flowagent.db"
    if cfg.store and "://" in cfg.store and not cfg.store.startswith(("sqlite:", "file:")):
        from ..store.pgconn import redact

        where = redact(cfg.store)
        dd = f" --store {where}"
    w(f"flowagent: data in {where}; look at it with 'flowagent sessions{dd}', "
      f"'flowagent trace SESSION_ID{dd}', 'flowagent export --format dot{dd}'\n")

def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n // 1024} KiB"
