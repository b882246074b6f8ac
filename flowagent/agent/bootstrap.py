"""Starts recording inside one Python process of a run (called by ``sitecustomize``).

Reads only ``FLOWAGENT_*`` environment variables (the launcher resolved the layered config and
exported it), so no TOML parsing or file search happens inside the program. Never raises:
a failure to start is reported on stderr once (under ``--verbose``) and the program runs
unrecorded.
"""

from __future__ import annotations

import builtins
import os
import sys

from ..protocol.env import flag as _flag
from ..protocol.rundir import CONTROL_FILE, preimported_name, rings_dir
from . import recorder, runstate
from .runstate import apply_selection
from .select import Selector

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

_started = False


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def _log(msg: str) -> None:
    if _flag(os.environ.get("FLOWAGENT_VERBOSE"), False):
        sys.stderr.write(f"flowagent[{os.getpid()}]: {msg}\n")


def install_helpers() -> None:
    """Make the instrumented code's helpers resolvable from any globals (see instrument.py)."""
    b = builtins.__dict__
    b["__fa_call__"] = recorder.call
    b["__fa_gcall__"] = recorder.gen_call
    b["__fa_ret__"] = recorder.ret
    b["__fa_own__"] = recorder.own
    b["__fa_suspend__"] = recorder.suspend
    b["__fa_asuspend__"] = recorder.asuspend
    b["__fa_resume__"] = recorder.resume
    b["__fa_delegate__"] = recorder.Delegate
    b["__fa_lcall__"] = recorder.lambda_call
    b["__fa_lret__"] = recorder.lambda_return
    b["__fa_reenter__"] = recorder.reenter


def _note_preimported(run_dir: str, selector: Selector) -> None:
    """Modules the include globs select that were imported before the agent started (by
    the interpreter or by the agent itself): the import hook never sees them, so the wrap
    backend cannot record them. Listed in ``rings/<pid>.preimported`` for the launcher's
    summary, which names them and says how to record them."""
    found = sorted(m for m in list(sys.modules) if selector.wants_name(m))
    if found:
        path = os.path.join(rings_dir(run_dir), preimported_name(os.getpid()))
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(found) + "\n")


def _initial_control(run_dir: str, env: Any) -> None:
    """Sampling rate from the config, then any live control already written for the run."""
    from ..protocol.jsonline import loads
    from .transport import apply_control

    try:
        rate = float(env.get("FLOWAGENT_SAMPLE_RATE") or 1.0)
    except ValueError:
        rate = 1.0
    paused = False
    try:
        with open(os.path.join(run_dir, CONTROL_FILE)) as f:
            state = loads(f.read())
        paused = bool(state.get("paused", False))
        rate = float(state.get("sample_rate", rate))
    except (OSError, ValueError, AttributeError):
        pass
    apply_control(paused, int(round(max(0.0, min(rate, 1.0)) * 1_000_000)))
    apply_selection(run_dir)


def start() -> None:
    """Idempotent entry point; does nothing unless this process belongs to a flowagent run."""
    global _started
    if _started:
        return
    _started = True
    env = os.environ
    run_dir = env.get("FLOWAGENT_RUN_DIR")
    if not run_dir or not _flag(env.get("FLOWAGENT_ENABLED"), True):
        return
    prefix = env.get("FLOWAGENT_PREFIX")
    if prefix and os.path.realpath(prefix) != os.path.realpath(sys.prefix):
        _log(f"not recording: interpreter {sys.executable} is not the run's ({prefix})")
        return
    backend = None
    try:
        from .backends import choose
        from .transport import Transport

        include, exclude = _list(env.get("FLOWAGENT_INCLUDE")), _list(env.get("FLOWAGENT_EXCLUDE"))
        roots = tuple(p for p in env.get("FLOWAGENT_ROOTS", os.getcwd()).split(os.pathsep) if p)
        runstate.selector = selector = Selector(include, exclude, roots)
        runstate.nested = nested = _flag(env.get("FLOWAGENT_NESTED"), True)
        recorder.S.cpu = _flag(env.get("FLOWAGENT_CPU_TIME"), False)
        if _flag(env.get("FLOWAGENT_SHAPE_EVERY_CALL"), False):
            recorder.shape_every_call()
        backend, reason = choose(env.get("FLOWAGENT_BACKEND", "auto"))
        runstate.backend_name = backend.name
        _log(f"backend {backend.name}: {reason}")
        _log(f"recorder hot path: {recorder.HOT_PATH}")
        transport = Transport(run_dir, int(env.get("FLOWAGENT_RING_SIZE") or 8 << 20),
                              int(env.get("FLOWAGENT_FLUSH_INTERVAL_MS") or 50),
                              {"run_id": env.get("FLOWAGENT_RUN_ID", ""), "backend": backend.name})
        runstate.transport = transport
        install_helpers()
        backend.install(selector, nested)
        from . import mainhook

        # wrap: the main script's functions are swapped for their twins; every backend: the
        # batch codec loads there when the script has functions to record.
        mainhook.install(lambda path: selector.wants("__main__", path), nested,
                         instrument=backend.name == "wrap")
        from .integrations import install as install_integrations

        install_integrations(backend)
        _initial_control(run_dir, env)
        if include and backend.name == "wrap":
            _note_preimported(run_dir, selector)
    except Exception as exc:  # never break the program because recording could not start
        recorder.S.on = False
        if backend is not None:
            try:
                backend.uninstall()  # nothing half-installed stays behind
            except Exception:
                pass
        sys.stderr.write(f"flowagent: recording disabled in pid {os.getpid()}: {exc}\n")
