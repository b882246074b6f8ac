"""What is measured: the workloads, the modes (tools) that run them, and the targets.

A *mode* turns one workload into a command line (and environment) for a fresh process.
Every mode of a workload runs the same program, ``run_workload.py NAME``, so their results
must carry the same checksum.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS_DIR = os.path.join(HERE, "workloads")
RUNNER = os.path.join(HERE, "run_workload.py")
PY = sys.executable
NOTHING = "nothing_matches_this"


def tool(name: str) -> str:
    """A console script of this interpreter's environment (falls back to PATH)."""
    path = os.path.join(os.path.dirname(PY), name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    package: str | None          # workload package (None: ``python -c pass``)
    runner: str | None           # name given to run_workload.py
    metric: str                  # "inner": time inside main(); "process": whole process
    quick_n: int | None          # size in --quick (None: not run in --quick)
    modes: tuple[str, ...]
    quick_modes: tuple[str, ...] = ()

    @property
    def package_dir(self) -> str:
        return os.path.join(WORKLOADS_DIR, self.package or "")


@dataclass
class Ctx:
    """Per-run context handed to a mode's command builder."""

    workload: Workload
    n: int | None
    tmp: str                     # a fresh directory for this run (data dir, traces)

    def workload_args(self) -> list[str]:
        w = self.workload
        return [RUNNER, w.runner or ""] + (["--n", str(self.n)] if self.n else [])


Command = tuple[list[str], dict[str, str]]


@dataclass(frozen=True)
class Mode:
    key: str
    label: str
    family: str                  # "baseline" | "flowagent" | "peer"
    build: Callable[[Ctx], Command]
    what: str = ""               # one line for the report: what exactly runs
    backend: str | None = None   # flowagent backend, when this mode records with flowagent
    records: bool = False        # a flowagent mode whose store and rings are worth reading


def _python(ctx: Ctx) -> Command:
    if ctx.workload.package is None:
        return [PY, "-c", "pass"], {}
    return [PY, *ctx.workload_args()], {}


def _target(ctx: Ctx) -> list[str]:
    if ctx.workload.package is None:
        return ["--", PY, "-c", "pass"]
    return ctx.workload_args()


def _include(ctx: Ctx) -> list[str]:
    pkg = ctx.workload.package
    return ["--include", f"{pkg}*"] if pkg else []


def _fa(backend: str) -> Callable[[Ctx], Command]:
    def build(ctx: Ctx) -> Command:
        return [tool("flowagent"), "run", "--backend", backend, "--data-dir",
                os.path.join(ctx.tmp, "data"), *_include(ctx), *_target(ctx)], {}
    return build


def _fa_every(backend: str) -> Callable[[Ctx], Command]:
    """``_fa(backend)`` describing the shapes of every call, whatever the configured default."""
    def build(ctx: Ctx) -> Command:
        argv, env = _fa(backend)(ctx)
        return argv, {**env, "FLOWAGENT_SHAPE_EVERY_CALL": "1"}
    return build


def _fa_budget(backend: str) -> Callable[[Ctx], Command]:
    """``_fa(backend)`` with the budgeted sample of shapes, whatever the configured default."""
    def build(ctx: Ctx) -> Command:
        argv, env = _fa(backend)(ctx)
        return argv, {**env, "FLOWAGENT_SHAPE_EVERY_CALL": "0"}
    return build


def _fa_nomatch(ctx: Ctx) -> Command:
    return [tool("flowagent"), "run", "--data-dir", os.path.join(ctx.tmp, "data"),
            "--include", NOTHING, *_target(ctx)], {}


def _fa_disabled(ctx: Ctx) -> Command:
    argv, _ = _fa("wrap")(ctx)
    return argv, {"FLOWAGENT_ENABLED": "0"}


def _agent_env(ctx: Ctx, enabled: bool) -> dict[str, str]:
    """The environment ``flowagent run`` gives its child, without the launcher or a
    sidecar: isolates what the agent costs inside the process."""
    from flowagent.launch.target import bootstrap_dir

    run_dir = os.path.join(ctx.tmp, "data", "runs", "agent-only")
    os.makedirs(os.path.join(run_dir, "rings"), exist_ok=True)
    pkg = ctx.workload.package
    env = {"PYTHONPATH": bootstrap_dir(), "FLOWAGENT_RUN_DIR": run_dir,
           "FLOWAGENT_RUN_ID": "agent-only", "FLOWAGENT_PREFIX": sys.prefix,
           "FLOWAGENT_ROOTS": ROOT, "FLOWAGENT_BACKEND": "wrap",
           "FLOWAGENT_INCLUDE": f"{pkg}*" if pkg else "",
           "FLOWAGENT_DATA_DIR": os.path.join(ctx.tmp, "data")}
    if not enabled:
        env["FLOWAGENT_ENABLED"] = "0"
    return env


def _agent_only(ctx: Ctx) -> Command:
    argv, _ = _python(ctx)
    return argv, _agent_env(ctx, True)


def _agent_cold(ctx: Ctx) -> Command:
    """Agent in process with a cold code cache: ``PYTHONDONTWRITEBYTECODE`` sends the
    instrumented-bytecode cache to the user's cache directory, here a fresh one for every
    run, so every selected module is rewritten and compiled (the first run after an edit)."""
    argv, _ = _python(ctx)
    return argv, {**_agent_env(ctx, True), "PYTHONDONTWRITEBYTECODE": "1",
                  "XDG_CACHE_HOME": os.path.join(ctx.tmp, "user-cache")}


def _agent_off(ctx: Ctx) -> Command:
    argv, _ = _python(ctx)
    return argv, _agent_env(ctx, False)


def _cprofile(ctx: Ctx) -> Command:
    return [PY, "-m", "cProfile", "-o", os.devnull, *ctx.workload_args()], {}


def _viztracer(restricted: bool) -> Callable[[Ctx], Command]:
    def build(ctx: Ctx) -> Command:
        # VizTracer ignores everything below the first frame outside its include list: the
        # runner that calls into the package must be listed, or nothing at all is recorded.
        inc = ["--include_files", RUNNER, ctx.workload.package_dir] if restricted else []
        return [tool("viztracer"), "--quiet", *inc, "-o", os.path.join(ctx.tmp, "trace.json"),
                "--", *ctx.workload_args()], {}
    return build


def _yappi(ctx: Ctx) -> Command:
    return [tool("yappi"), "-c", "wall", "-o", os.path.join(ctx.tmp, "yappi.pstat"),
            *ctx.workload_args()], {}


def _pyinstrument(ctx: Ctx) -> Command:
    return [tool("pyinstrument"), "-o", os.path.join(ctx.tmp, "profile.txt"),
            *ctx.workload_args()], {}


def _monkeytype(ctx: Ctx) -> Command:
    return [tool("monkeytype"), "run", *ctx.workload_args()], {
        "MONKEYTYPE_TRACE_MODULES": ctx.workload.package or "",
        "MT_DB_PATH": os.path.join(ctx.tmp, "monkeytype.sqlite3")}


def _otel(ctx: Ctx) -> Command:
    args = ctx.workload_args()
    return [PY, args[0], "--otel", *args[1:]], {}


MODES: dict[str, Mode] = {m.key: m for m in (
    Mode("baseline", "python (baseline)", "baseline", _python, "python run_workload.py NAME"),
    Mode("fa_wrap", "flowagent wrap", "flowagent", _fa("wrap"),
         "flowagent run --backend wrap --include 'bench_NAME*' (full recording)",
         backend="wrap", records=True),
    Mode("fa_profile", "flowagent profile", "flowagent", _fa("profile"),
         "flowagent run --backend profile --include 'bench_NAME*' (full recording)",
         backend="profile", records=True),
    Mode("fa_monitor", "flowagent monitor", "flowagent", _fa("monitor"),
         "flowagent run --backend monitor --include 'bench_NAME*' (full recording, "
         "sys.monitoring, Python 3.12+)", backend="monitor", records=True),
    Mode("fa_wrap_every", "flowagent wrap, shapes of every call", "flowagent",
         _fa_every("wrap"), "fa_wrap with FLOWAGENT_SHAPE_EVERY_CALL=1", backend="wrap",
         records=True),
    Mode("fa_wrap_budget", "flowagent wrap, budgeted shapes", "flowagent", _fa_budget("wrap"),
         "fa_wrap with FLOWAGENT_SHAPE_EVERY_CALL=0", backend="wrap", records=True),
    Mode("fa_monitor_every", "flowagent monitor, shapes of every call", "flowagent",
         _fa_every("monitor"), "fa_monitor with FLOWAGENT_SHAPE_EVERY_CALL=1",
         backend="monitor", records=True),
    Mode("fa_monitor_budget", "flowagent monitor, budgeted shapes", "flowagent",
         _fa_budget("monitor"), "fa_monitor with FLOWAGENT_SHAPE_EVERY_CALL=0",
         backend="monitor", records=True),
    Mode("fa_nomatch", "flowagent, include matches nothing", "flowagent", _fa_nomatch,
         f"flowagent run --include {NOTHING} (agent on, nothing selected)", backend="auto"),
    Mode("fa_disabled", "flowagent disabled", "flowagent", _fa_disabled,
         "FLOWAGENT_ENABLED=0 flowagent run ... (launcher only)"),
    Mode("fa_agent_only", "agent in process, no launcher", "flowagent", _agent_only,
         "python with the bootstrap on PYTHONPATH and the run's FLOWAGENT_* env, no launcher "
         "or sidecar (wrap)", backend="wrap"),
    Mode("fa_agent_cold", "agent in process, cold code cache", "flowagent", _agent_cold,
         "as above with PYTHONDONTWRITEBYTECODE=1 and a fresh XDG_CACHE_HOME: the "
         "instrumented-bytecode cache starts empty, so every module is rewritten (wrap)",
         backend="wrap"),
    Mode("fa_agent_off", "bootstrap present, FLOWAGENT_ENABLED=0", "flowagent", _agent_off,
         "python with the bootstrap on PYTHONPATH and FLOWAGENT_ENABLED=0 (kill switch)"),
    Mode("cprofile", "cProfile", "peer", _cprofile, "python -m cProfile -o /dev/null"),
    Mode("viztracer", "VizTracer (workload files)", "peer", _viztracer(True),
         "viztracer --include_files RUNNER WORKLOAD_DIR (without the runner it records "
         "nothing)"),
    Mode("viztracer_all", "VizTracer (everything)", "peer", _viztracer(False),
         "viztracer (every Python and C call, 1M-entry ring buffer, JSON dump at exit)"),
    Mode("yappi", "yappi (wall clock)", "peer", _yappi, "yappi -c wall (all threads)"),
    Mode("pyinstrument", "pyinstrument", "peer", _pyinstrument,
         "pyinstrument (statistical, 1 ms interval)"),
    Mode("monkeytype", "MonkeyType (workload)", "peer", _monkeytype,
         "monkeytype run with MONKEYTYPE_TRACE_MODULES=bench_NAME"),
    Mode("otel", "OpenTelemetry SDK span per function", "peer", _otel,
         "every workload function wrapped in tracer.start_as_current_span (SDK, no export)"),
)}

# sys.monitoring exists from Python 3.12: the monitor backend is measured only there (on
# 3.11 the launcher would run wrap under its name).
_MONITOR = ("fa_monitor",) if sys.version_info >= (3, 12) else ()
_ALL = ("baseline", "fa_wrap", "fa_profile", *_MONITOR, "fa_nomatch", "fa_disabled",
        "cprofile", "viztracer", "viztracer_all", "yappi", "pyinstrument", "monkeytype", "otel")
_QUICK = ("baseline", "fa_wrap", *_MONITOR, "cprofile")
# ``--cores``: every flowagent core beside plain Python, cProfile and VizTracer, in one run.
CORES_WORKLOADS = ("calls", "handler", "flask")
CORES_MODES = ("baseline", "fa_wrap", "fa_profile", *_MONITOR, "cprofile", "viztracer")

WORKLOADS: dict[str, Workload] = {w.key: w for w in (
    Workload("calls", "~1M small calls", "bench_calls", "calls", "inner", 40_000, _ALL,
             _QUICK),
    Workload("handler", "request handler, 2000 requests", "bench_handler", "handler", "inner",
             500, _ALL, _QUICK),
    Workload("flask", "Flask, 1000 test-client requests", "bench_flask", "flask", "inner",
             200, _ALL, _QUICK),
    Workload("asyncio", "asyncio, 2000 tasks", "bench_asyncio", "asyncio", "inner", 500,
             _ALL, _QUICK),
    Workload("flask_http", "Flask over HTTP (threaded werkzeug), 1000 requests",
             "bench_flask", "flask_http", "inner", None,
             ("baseline", "fa_wrap", "fa_profile", *_MONITOR, "fa_nomatch", "fa_disabled",
              "cprofile")),
    Workload("startup", "import a 50-module package", "bench_startup", "startup", "process",
             None, ("baseline", "fa_wrap", "fa_profile", *_MONITOR, "fa_nomatch",
                    "fa_disabled", "fa_agent_only", "fa_agent_cold", "cprofile", "viztracer",
                    "yappi", "pyinstrument", "monkeytype")),
    Workload("startup_pass", "python -c pass", None, None, "process", 0,
             ("baseline", "fa_wrap", "fa_disabled", "fa_agent_only", "fa_agent_off"),
             ("baseline", "fa_wrap")),
)}


@dataclass(frozen=True)
class Target:
    kind: str        # "ratio" (median ratio to baseline) | "added_ms" (process wall added)
    limit: float
    text: str


_FULL = {"calls": 4.0, "handler": 2.0, "flask": 1.10, "flask_http": 1.10}


def target_for(workload: str, mode: str) -> Target | None:
    """The project's targets (benchmarks/README.md), applied to the rows they are about."""
    if mode in ("fa_wrap", "fa_profile", "fa_monitor") and workload in _FULL:
        lim = _FULL[workload]
        return Target("ratio", lim, f"full recording <= {lim:g}x")
    if workload in ("startup", "startup_pass"):
        if mode in ("fa_wrap", "fa_profile", "fa_monitor", "fa_nomatch", "fa_agent_only"):
            return Target("added_ms", 50.0, "start-up added when enabled <= 50 ms")
        if mode in ("fa_disabled", "fa_agent_off"):
            return Target("added_ms", 5.0, "start-up added when disabled <= 5 ms")
        return None
    if mode == "fa_nomatch":
        return Target("ratio", 1.02, "include matching nothing <= 1.02x")
    if mode == "fa_disabled":
        return Target("ratio", 1.01, "disabled <= 1.01x")
    return None


_FINE = ("fa_nomatch", "fa_disabled", "fa_agent_only", "fa_agent_off")


@dataclass
class Plan:
    quick: bool
    pairs: int
    smoke: bool = False          # every mode once at the small sizes: checks, not numbers
    workloads: list[Workload] = field(default_factory=list)
    modes: tuple[str, ...] = ()  # every workload runs exactly these (``--cores``)

    def modes_of(self, w: Workload) -> list[Mode]:
        if self.modes:
            return [MODES[k] for k in self.modes]
        keys = (w.quick_modes or w.modes) if self.quick and not self.smoke else w.modes
        return [MODES[k] for k in keys]

    def pairs_for(self, w: Workload, mode: Mode) -> int:
        """Modes whose targets are a few percent (or ms) and whose runs are cheap get
        2N+1 pairs: their difference to baseline is smaller than one run's noise."""
        if self.smoke:
            return self.pairs
        if mode.key in _FINE or w.key == "startup_pass":
            return 2 * self.pairs + 1
        return self.pairs

    def n_of(self, w: Workload) -> int | None:
        return (w.quick_n or None) if self.quick or self.smoke else None
