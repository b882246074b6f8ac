"""A run from start to end: the run directory, the sidecar, the program, the summary, and the
exit status passed through.
"""

from __future__ import annotations

import os
import sys

from ..errors import StoreError, TargetError
from ..protocol import rundir
from .summary import _ended, _finish_run, _print_summary, _run_row, _size
from .supervise import Sidecar, Supervisor
from .target import Target, _command, _pythonpath, _script_dir, bootstrap_dir, exec_plain

TYPE_CHECKING = False  # importing typing costs ~3 ms of every run's start-up
if TYPE_CHECKING:
    from ..config import Config


def _new_run_id() -> str:
    """Time-ordered and readable; 32 random bits tell apart runs of the same second, and
    :func:`_claim_run_dir` makes sure no two runs ever get the same id."""
    import time

    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + os.urandom(4).hex()


def _claim_run_dir(data_dir: str) -> tuple[str, str]:
    """A new run id and its directory, made atomically: an id whose directory exists (a
    concurrent run, a clock set back) is never reused."""
    runs = os.path.join(data_dir, rundir.RUNS)
    os.makedirs(runs, exist_ok=True)
    while True:
        run_id = _new_run_id()
        run_dir = os.path.join(runs, run_id)
        try:
            os.mkdir(run_dir)
        except FileExistsError:
            continue
        os.mkdir(rundir.rings_dir(run_dir))
        return run_id, run_dir


def _check_room(run_dir: str, ring_size: int) -> None:
    """Refuse to record where not even one ring fits: the cause, named before anything runs."""
    try:
        st = os.statvfs(run_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < ring_size + 4096 + (1 << 20):  # a ring, its header, room for the database
        raise StoreError(f"not enough free space for recording in {run_dir} ({_size(free)} "
                         f"free; each recorded process needs {_size(ring_size)} for its ring); "
                         "free some space, lower --ring-size or pass --data-dir on a larger "
                         "filesystem")



def _otlp_args(cfg: Config, target: Target) -> tuple[str, ...]:
    """The sidecar's OTLP options (none without an endpoint); ConfigError when the extra is
    missing, before anything starts."""
    endpoint = getattr(cfg, "otlp_endpoint", "")
    if not endpoint:
        return ()
    from ..reports.export.otlp import program_name
    from ..sidecar.otlp_sender import check_available

    check_available()
    service = getattr(cfg, "service", "") or program_name(target.describe())
    return ("--otlp-endpoint", endpoint, "--otlp-service", service,
            "--otlp-host", getattr(cfg, "host", "") or "")


def _prepare(cfg: Config, extra_args: tuple[str, ...] = ()) -> tuple[str, str, Sidecar]:
    """Run id, run directory and the sidecar (not waited for); StoreError if any fails."""
    try:
        run_id, run_dir = _claim_run_dir(cfg.data_dir)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {cfg.data_dir}: {exc.strerror}; "
                         "pass --data-dir with a writable location") from None
    _check_room(run_dir, cfg.ring_size)
    from ..store.location import store_url  # not store.api: the sidecar loads that

    try:
        sidecar = Sidecar(run_dir, store_url(cfg.data_dir, cfg.store), run_id, cfg, extra_args)
    except OSError as exc:
        raise StoreError(f"cannot start the flowagent sidecar: {exc}") from None
    return run_id, run_dir, sidecar


def run(cfg: Config, target: Target, cwd: str, ends_process: bool = False) -> int:
    """Run ``target`` under the agent; returns the program's exit status.

    The program always runs: if recording cannot start (data directory unwritable or full),
    one clear error line says so and the program runs unrecorded; if the sidecar fails, one
    line says why and where the recording waits to be stored. ``ends_process``: the caller
    ends the process right after (the console command), so the sidecar, done once its
    summary is read, is not waited for while the kernel tears it down."""
    from ..service import default_service

    service = cfg.service or default_service(target.kind, target.name, target.args)
    sidecar_args = (*_otlp_args(cfg, target), "--service", service)
    try:
        run_id, run_dir, sidecar = _prepare(cfg, sidecar_args)
    except StoreError as exc:
        sys.stderr.write(f"flowagent: error: {exc}; running {target.describe()} without "
                         "recording\n")
        exec_plain(target.kind, target.name, target.args)
    # The sidecar's interpreter boots on another core while this one gets the program ready.
    from ..config import to_child_env

    # The backend: `auto` is resolved by the agent in each process of the run, with the same
    # function on the same interpreter; the launcher names it from the agent's runstate
    # (AUTO_BACKEND, kept equal to that choice) without loading the agent's backends (the
    # recorder, the instrumenter), which would take CPU from the program and the sidecar on
    # a short run's critical path. A requested backend or --verbose is resolved by the
    # backends before the program starts, as the user reads its note or reason before the
    # program's output.
    resolved = cfg.verbose or cfg.backend != "auto"
    if resolved:
        backend_name, instruments_main = _resolve_backend(cfg)
    else:
        from ..agent.runstate import AUTO_BACKEND, AUTO_INSTRUMENTS_MAIN

        backend_name, instruments_main = AUTO_BACKEND, AUTO_INSTRUMENTS_MAIN
    command = _command(target, instruments_main)
    env = dict(os.environ)
    env.update(to_child_env(cfg))
    roots = [cwd] + ([_script_dir(target.path)] if target.kind == "script" else [])
    env.update(FLOWAGENT_RUN_DIR=run_dir, FLOWAGENT_RUN_ID=run_id, FLOWAGENT_PREFIX=sys.prefix,
               FLOWAGENT_ROOTS=os.pathsep.join(roots),
               FLOWAGENT_BACKEND=backend_name if resolved else cfg.backend,
               PYTHONPATH=_pythonpath(bootstrap_dir(), os.environ.get("PYTHONPATH")))
    try:
        program = Supervisor(command, env)
    except OSError as exc:
        sidecar.stop()
        raise TargetError(f"cannot start {target.describe()}: {exc.strerror}") from None
    # While the program runs: the launcher's part of the run's row, so that the end of the
    # run follows the program's exit at once (signals meanwhile wait, blocked, for wait()).
    try:
        row = _run_row(target, cwd, backend_name)
    except Exception:  # noqa: BLE001 - made again after the program, where it is reported
        row = None
    rc = program.wait(on_other_child=sidecar.check)
    try:
        end = _ended(row if row is not None else _run_row(target, cwd, backend_name), rc)
        summary = sidecar.finish(end)
        sidecar.report()
        if sidecar.started and not (summary or {}).get("run_row"):
            # The sidecar did not store our part of the run's row: store it ourselves.
            _finish_run(cfg, run_id, end, summary)
        if summary is not None:
            _print_summary(run_id, run_dir, summary, cfg)
        sys.stderr.flush()
    except OSError:
        pass  # stderr is gone (a closed pipe, a hung-up terminal): the exit status still counts
    except Exception as exc:  # noqa: BLE001 - the launcher's own trouble is only reported
        _say(f"flowagent: error: could not finish run {run_id} ({type(exc).__name__}: {exc}); "
             f"the program's exit status is kept\n")
    if not ends_process:
        sidecar.reap()
    return rc


def _resolve_backend(cfg: Config) -> tuple[str, bool]:
    """The backend that records (the agent's own choice, see
    :func:`flowagent.agent.backends.choose`): its name and whether it instruments a main
    script; its reason under --verbose and what it cannot record on this Python are said."""
    from ..agent.backends import caveat, choose

    backend, reason = choose(cfg.backend)
    if cfg.verbose:
        sys.stderr.write(f"flowagent: backend {backend.name}: {reason}\n")
    if caveat(backend.name):
        sys.stderr.write(f"flowagent: note: {caveat(backend.name)}\n")
    return backend.name, backend.capabilities.instruments_main


def _say(line: str) -> None:
    """One line on stderr, if there still is one."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
