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

import gc
import os
import sys
import threading
import time

from ..errors import StoreError
from ..protocol import jsonline
from ..protocol.rundir import RING_SUFFIX, rings_dir
from ..store.api import RECENT, RunEnd, RunTotals, Store, open_store, out_of_space
from .pending import still_running
from .retention import Retention
from .totals import zero_totals

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

    from .ingest import Ingestor


def _watch_stdin(done: threading.Event, received: list[bytes]) -> None:
    """Until stdin closes (the launcher's word that the program has ended). What comes
    before that (the launcher's part of the run's row, see :func:`_launcher_row`) is kept,
    its first 64 KiB."""
    kept = 0
    try:
        stdin: Any = sys.stdin.buffer  # a BufferedReader (typeshed says BinaryIO: no read1)
        while chunk := stdin.read1(65536):
            if kept < 65536:
                received.append(chunk)
                kept += len(chunk)
    except (OSError, ValueError):
        pass
    done.set()


def _launcher_row(received: list[bytes]) -> RunEnd | None:
    """What only the launcher knows about the run (argv, cwd, backend, end, exit status),
    sent as one JSON line ``{"run": {...}}`` (a :class:`RunEnd`'s fields) before it closes
    our stdin: stored in the run's last transaction, so the launcher need not open the store
    itself after the program has ended. The command line comes as typed and is masked here
    (:mod:`flowagent.redact`), as every command line the store keeps. None when it sent
    nothing usable (it then stores the row itself)."""
    if not received:  # nothing sent (--once, an older launcher): json's error not needed
        return None
    try:
        row = jsonline.loads(b"".join(received)).get("run")
        if not isinstance(row["argv"], list):
            return None
        end = RunEnd(argv=tuple(row["argv"]), cwd=row["cwd"], backend=row["backend"],
                     ended_ns=row["ended_ns"], exit_code=row["exit_code"], status="")
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
    if not (all(isinstance(a, str) for a in end.argv) and isinstance(end.cwd, str)
            and isinstance(end.backend, str) and type(end.ended_ns) is int
            and type(end.exit_code) is int):
        return None
    from ..redact import mask_argv  # loaded while the program ran (see run())

    return end._replace(argv=tuple(mask_argv(list(end.argv))))


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


def _has_rings(run_dir: str) -> bool:
    """Has any process of the run made its ring (with its first recorded batch)?"""
    try:
        with os.scandir(rings_dir(run_dir)) as entries:
            return any(e.name.endswith(RING_SUFFIX) for e in entries)
    except OSError:
        return False


def _watch_parent(done: threading.Event, parent: int, poll_s: float) -> None:
    """An orphaned sidecar ends: if the launcher is gone (killed, and its stdin pipe kept
    open by someone else), finish the run as if it had said so."""
    while not done.wait(max(poll_s * 25, 0.5)):
        if os.getppid() != parent:
            done.set()


# How long the end of a run waits for processes that are still running to end by themselves.
SETTLE_S = 1.5
# How often a sidecar whose store's disk is full tries to write again.
FULL_RETRY_S = 0.5


def _close(store: Store) -> None:
    """Close a store whose last write failed: what it had not committed is rolled back."""
    try:
        store.close()
    except Exception:
        pass


def _say(line: str) -> None:
    """One line in the sidecar's log (its stderr), never failing: the log may sit on the
    same full disk."""
    try:
        sys.stderr.write(f"flowagent sidecar: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _add_retired(store: Store, run_id: str, seen: set[str], totals: dict[str, Any]) -> None:
    """A resumed run's totals also count the processes whose rings were drained and
    removed before: their counters live in the store only."""
    for row in store.process_counters(run_id):
        if row.pk in seen:
            continue
        totals["processes"] += 1
        for key in ("produced_events", "dropped_events", "dropped_batches",
                    "corrupt_frames", "duplicate_frames", "agent_errors", "stored_events"):
            totals[key] += getattr(row, key)


def run_identity(service: str | None = None, host: str | None = None
                 ) -> tuple[str | None, str | None]:
    """The service a run records and the machine it runs on, as its row names them: given
    ones first, else ``FLOWAGENT_SERVICE`` / ``FLOWAGENT_HOST``, else no service and this
    machine's host name."""
    env = os.environ
    here = os.uname().nodename  # socket.gethostname(), without importing socket
    return (service or env.get("FLOWAGENT_SERVICE") or None,
            host or env.get("FLOWAGENT_HOST") or here or None)


def run(run_dir: str, db: str, run_id: str, poll_s: float, resume: bool, follow: bool,
        retention: Retention = Retention(), hook_specs: tuple[str, ...] = (),
        max_data_size: int = 0, otlp: dict[str, str] | None = None,
        service: str | None = None, host: str | None = None,
        started_ns: int = 0) -> dict[str, Any]:
    tune_gc()
    _raise_soft_limits()
    from ..store.limit import data_dir_of

    store = open_store(db, data_dir=data_dir_of(db, run_dir))
    if not resume:
        made = store.create_run(run_id, started_ns or time.time_ns(),
                                *run_identity(service, host))
        if not made:  # never write one run's records into another's
            raise StoreError(f"run {run_id} already exists in {db}; start the run again "
                             "(it gets a new id)")
    done = threading.Event()
    received: list[bytes] = []
    # The C module under ``signal``, whose wrappers (and ``enum``, which it loads for them)
    # the sidecar needs not: the same calls, the signal given to a handler as an int.
    import _signal  # type: ignore[import-not-found]  # (no stub: signal's C half)

    _signal.signal(_signal.SIGTERM, lambda *_: done.set())
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # the launcher forwards ^C to the program only
    if follow:
        threading.Thread(target=_watch_stdin, args=(done, received), daemon=True).start()
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
    from .sampler import ProcessSampler
    from .state import StateFile

    if follow and not resume:  # the launcher's row, masked at the end (its patterns compile)
        from .. import redact  # noqa: F401

    hooks = Hooks(list(hook_specs))
    control = Control(run_dir, db, run_identity(service, host)[0])  # + the service's fleet
    sender = None
    if otlp and otlp.get("endpoint"):
        from .otlp_sender import SenderProcess

        sender = SenderProcess(otlp["endpoint"], db, otlp.get("service") or "python",
                               otlp.get("host") or None)

    def ingestor() -> Ingestor:
        from .ingest import Ingestor

        made = Ingestor(store, run_id, run_dir, retention, hooks if hooks else None)
        if sender is not None:
            made.finished_sink = sender.offer
        return made

    # The ingestion machinery (the decoder, session trees, aggregates: a fifth of a short
    # run's sidecar) loads with the first ring: a run whose processes record nothing (a
    # short script, a kill-switched child) never needs it, and the sidecar's whole life is
    # the critical path of such a run. Resuming reloads the stored state at once.
    ingest: Ingestor | None = ingestor() if resume or _has_rings(run_dir) else None
    sampler = ProcessSampler(store, run_id)
    state = StateFile(run_dir)
    state.set("storing")
    reloaded = resume  # the ingestion state was rebuilt from the store at least once
    full_waits = 0  # failed tries since the store's disk was last found full
    full_since = 0.0
    full_episodes, full_s = 0, 0.0  # for the summary
    while not done.is_set():
        try:
            if ingest is None and _has_rings(run_dir):
                ingest = ingestor()
            live = ingest.procs.values() if ingest is not None else ()
            control.poll_fleet(store)  # a SQLite store's fleet row (a server's: its thread)
            control.apply(live)
            sampler.maybe_sample(live)
            stored = 0
            if ingest is not None:
                stored = ingest.poll()
                ingest.prune()
        except Exception as exc:
            if not out_of_space(exc):
                raise
            # The store's disk is full. The transaction that found no room rolls back and
            # the rings keep everything not yet committed (a ring that fills meanwhile
            # counts what it drops). Wait for room, then go on from what the store holds,
            # as a restarted sidecar does; once the program has ended, the final drain
            # below tries once more and names the cause if there is still no room.
            _close(store)
            if not full_waits:
                full_episodes += 1
                full_since = time.monotonic()
                said = (f"the store's disk is full ({' '.join(str(exc).split())}); waiting "
                        "for room, the rings keep what the program records meanwhile")
                _say(said)
                state.set(f"waiting for room: {said}")
            full_waits += 1
            while True:
                done.wait(min(FULL_RETRY_S * 2 ** min(full_waits, 4), 5.0))
                try:
                    store = open_store(db, data_dir=data_dir_of(db, run_dir))
                    if ingest is not None:
                        ingest = ingestor()
                    break
                except Exception as again:
                    if not out_of_space(again) or done.is_set():
                        raise
            sampler = ProcessSampler(store, run_id)
            reloaded = True
            continue
        if full_waits and stored:
            _say("there is room again: storing goes on")
            state.set("storing")
            full_waits = 0
            full_s += time.monotonic() - full_since
        if stored == 0:
            done.wait(poll_s)
    control.close()
    # Processes still running (a daemon that outlived the program) keep their sessions open
    # and their rings: what they record from now on is stored by a later --resume. Helpers
    # that end just after the program (a pool's workers, multiprocessing's resource
    # tracker) are waited for briefly, and what they flush on their way out is stored now.
    settle = time.monotonic() + (SETTLE_S if follow else 0.0)
    while True:
        if ingest is None and _has_rings(run_dir):
            ingest = ingestor()
        procs = ingest.procs if ingest is not None else {}
        if ingest is not None:
            ingest.drain_to_end()
        pending = {pk: p for pk, p in procs.items() if p.reader.producer_alive()}
        running = still_running(run_id, ((p.pid, p.info.get("argv", []), pk in pending)
                                         for pk, p in procs.items()))
        if not running or time.monotonic() >= settle:
            break
        time.sleep(0.05)
    if ingest is not None:
        incomplete = ingest.finish_all(frozenset(pending))
    else:  # nothing was recorded: no session to end, every counter zero
        incomplete = 0
    # Before the final prune: queued sessions are read back from their kept trees.
    otlp_totals = sender.close() if sender is not None else {}
    if ingest is not None:
        pruned = ingest.prune(force=True)
        totals = ingest.totals()
    else:
        pruned = store.prune_recent(run_id, RECENT, retention.recent)
        totals = zero_totals()
    if reloaded:
        _add_retired(store, run_id, set(procs), totals)
    for proc in procs.values():
        proc.reader.retire_if_done(producer_gone=True)
    with store.transaction():
        st = store.session_totals(run_id)
        sessions = (st.sessions, st.calls, st.errors)
        incomplete_total = st.open_sessions + st.incomplete_sessions
        store.write_run_totals(run_id, RunTotals(
            sessions=st.sessions, calls=st.calls, errors=st.errors,
            incomplete_sessions=incomplete_total,
            produced_events=totals["produced_events"] + totals["dropped_events"],
            dropped_events=totals["dropped_events"], dropped_batches=totals["dropped_batches"],
            corrupt_frames=totals["corrupt_frames"], duplicate_frames=totals["duplicate_frames"],
            agent_errors=totals["agent_errors"], processes=totals["processes"],
            sampled_out=totals["sampled_out"], hook_errors=hooks.errors,
            hook_error=hooks.first_error or None, pruned_sessions=pruned))
        if resume:
            store.resolve_pending(run_id, bool(running))
        launcher_row = None if resume else _launcher_row(received)
        if launcher_row is not None:
            store.finish_run(run_id, launcher_row._replace(
                status="pending" if running else "finished"))
        if totals["profile_displacements"]:
            store.write_profile_displaced(run_id, totals["profile_displacements"],
                                          totals["profile_displaced_ns"])
        if otlp_totals:
            store.write_otlp_totals(run_id, otlp_totals["otlp_sessions"],
                                    otlp_totals["otlp_spans"], otlp_totals["otlp_undelivered"])
    if full_waits:  # room came back for the final drain only
        full_s += time.monotonic() - full_since
    state.set("finished")
    state.close()
    summary = dict(totals, sessions=sessions[0], calls=sessions[1], errors=sessions[2],
                   incomplete_sessions=incomplete_total, newly_incomplete=incomplete,
                   hook_errors=hooks.errors, hook_error=hooks.first_error,
                   pending=running, run_row=launcher_row is not None,
                   store_full=full_episodes, store_full_s=round(full_s, 3), **otlp_totals)
    if max_data_size:
        from ..store.limit import data_dir_of, enforce

        kept = enforce(store, data_dir_of(db, run_dir), max_data_size, run_id)
        summary.update(pruned_runs=len(kept.runs), pruned_bytes=kept.freed_bytes,
                       data_bytes=kept.size_bytes)
    if hooks:
        hooks.run_end(dict(summary, run_id=run_id))
        if hooks.errors != summary["hook_errors"]:
            store.write_hook_errors(run_id, hooks.errors, hooks.first_error)
            summary.update(hook_errors=hooks.errors, hook_error=hooks.first_error)
    # Closed before the summary is said, though a SQLite store's close (the write-ahead log
    # checkpointed into the database file, two fsyncs) is most of a short run's end: once
    # the launcher returns, the file is whole for whoever copies or opens it next.
    store.close()
    note = getattr(store, "forward_note", None)  # a shared store's spool still waiting
    if note:
        summary["store_note"] = note
    if max_data_size and getattr(store, "capabilities", {}).get("shared"):
        summary.update(_server_limit(db, max_data_size, run_id))
    return summary


def _server_limit(db: str, max_data_size: int, run_id: str) -> dict[str, Any]:
    """The size limit on a shared server (whole runs dropped, oldest first), reported in
    the summary; a server that does not answer is left for the next run to limit."""
    from ..store.limit import enforce_server

    try:
        kept = enforce_server(db, max_data_size, run_id)
    except Exception as exc:
        return {"server_limit_error": " ".join(str(exc).split())[:300]}
    return {"server_pruned_runs": len(kept.runs), "server_pruned_bytes": kept.freed_bytes,
            "server_bytes": kept.size_bytes}


# The sidecar's options, declared once: (type, default, help). The launcher's command line is
# read with this table alone; argparse, built from it, takes ``--help``, usage errors and
# anything else.
_OPTIONS: dict[str, tuple[Any, Any, str | None]] = {
    "--run-dir": (str, None, None), "--db": (str, None, None), "--run-id": (str, None, None),
    "--poll-ms": (float, 20.0, None), "--retention": (int, Retention().recent, None),
    "--error-cap": (int, Retention().error_cap, None),
    "--max-data-size": (int, 0, "bytes the data directory may hold; oldest runs are pruned "
                        "(0: no limit)"),
    "--otlp-endpoint": (str, "", None), "--otlp-service": (str, "", None),
    "--otlp-host": (str, "", None),
    "--service": (str, "", "service the run records (default: FLOWAGENT_SERVICE, else none)"),
    "--host": (str, "", "host name the run is stored under (default: FLOWAGENT_HOST, else "
               "this machine's)"),
    "--started-ns": (int, 0, "when the run started, in ns since the epoch (default: now)"),
}
_FLAGS = {"--resume": None, "--once": "drain what is there and exit"}
_REQUIRED = ("run_dir", "db", "run_id")


def _quick_args(argv: list[str]) -> Any:
    """The command line as the launcher writes it (``--option value`` pairs, the flags,
    repeated ``--hook``), parsed without argparse, which with gettext and locale costs every
    run's start ~5 ms; None for anything else, which argparse then parses (or explains)."""
    from types import SimpleNamespace

    values: dict[str, Any] = {o[2:].replace("-", "_"): d for o, (_, d, _h) in _OPTIONS.items()}
    values.update(resume=False, once=False, hook=[])
    i = 0
    while i < len(argv):
        option = argv[i]
        if option in _FLAGS:
            values[option[2:]] = True
            i += 1
            continue
        spec = _OPTIONS.get(option)
        if (spec is None and option != "--hook") or i + 1 >= len(argv):
            return None
        value = argv[i + 1]
        if value.startswith("-") and not value.lstrip("-").replace(".", "").isdigit():
            return None  # an option where a value belongs: argparse says so
        if spec is None:
            values["hook"].append(value)
        else:
            try:
                values[option[2:].replace("-", "_")] = spec[0](value)
            except ValueError:
                return None
        i += 2
    if any(values[name] is None for name in _REQUIRED):
        return None
    return SimpleNamespace(**values)


def _parse_args(argv: list[str]) -> Any:
    import argparse

    p = argparse.ArgumentParser(prog="python -m flowagent.sidecar")
    for option, (kind, default, help_text) in _OPTIONS.items():
        if default is None:
            p.add_argument(option, required=True)
        else:
            p.add_argument(option, type=kind, default=default, help=help_text)
    for flag, help_text in _FLAGS.items():
        p.add_argument(flag, action="store_true", help=help_text)
    p.add_argument("--hook", action="append", default=[])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    a = _quick_args(args) or _parse_args(args)
    otlp = {"endpoint": a.otlp_endpoint, "service": a.otlp_service, "host": a.otlp_host}
    summary = run(a.run_dir, a.db, a.run_id, a.poll_ms / 1000.0, a.resume, not a.once,
                  Retention(a.retention, a.error_cap), tuple(a.hook), a.max_data_size,
                  otlp, a.service or None, a.host or None, a.started_ns)
    sys.stdout.write(jsonline.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


def _exit_code() -> int:
    """Run :func:`main`; an error that stops it is printed to the log and, as one line
    ``ERROR <exception>``, on stdout (what the launcher reports), and ends it with status 1."""
    try:
        return main()
    except SystemExit as exc:  # argparse's usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:
        import traceback  # only on the way out with an error: it costs every start ~4 ms

        try:
            traceback.print_exc()
        except (OSError, ValueError):
            pass
        # Also on stdout, for the launcher: the log may sit on a full disk.
        last = " ".join(traceback.format_exception_only(type(exc), exc)[-1].split())
        try:
            sys.stdout.write(f"ERROR {last}\n")
        except (OSError, ValueError):
            pass
        return 1


if __name__ == "__main__":
    code = _exit_code()
    # Everything is stored, closed and said (or the error is): end now, also after an error.
    # Tearing the interpreter down (every module, the collector's last pass) adds tens of
    # milliseconds the launcher would wait for at the end of every run, and with the stdin
    # watcher still blocked in a read it aborts the process (``_enter_buffered_busy``), which
    # would hide the error behind a signal.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
