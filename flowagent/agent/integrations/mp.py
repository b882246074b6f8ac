"""multiprocessing, patched when (and only if) the program imports it.

A forked worker ends in ``os._exit`` (no ``atexit``), so its final flush
  hooks multiprocessing's own exit path; a spawned child re-runs the parent's main script as
  ``__mp_main__`` through ``runpy.run_path``, which bypasses import hooks, so that is routed
  through the same instrumenting compile as the main script.
"""

from __future__ import annotations

import os
from types import ModuleType

from .. import lineage, recorder, runstate
from ..runmain import build_main_code

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any


def patch_mp_util(module: ModuleType) -> None:
    original = module._exit_function

    def _exit_function(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            if runstate.transport is not None:
                runstate.transport.close()

    module.__dict__["_exit_function"] = _exit_function


def patch_mp_spawn(module: ModuleType) -> None:
    import runpy

    original = module._fixup_main_from_path

    def _fixup_main_from_path(main_path: str) -> Any:
        real_run_path = runpy.run_path

        def run_path(path_name: str, init_globals: dict[str, Any] | None = None,
                     run_name: str | None = None) -> dict[str, Any]:
            path = path_name  # runpy's own parameter names: a caller may pass them by keyword
            if os.path.splitext(path)[1] != ".py" or not os.path.isfile(path):
                return real_run_path(path, init_globals, run_name)
            code = build_main_code(path, run_name or "<run_path>")
            namespace: dict[str, Any] = dict(init_globals or {})
            namespace.update(__name__=run_name, __file__=os.path.abspath(path),
                             __cached__=None, __loader__=None, __package__="", __spec__=None,
                             __builtins__=__builtins__)
            exec(code, namespace)
            return namespace

        runpy.run_path = run_path
        try:
            return original(main_path)
        finally:
            runpy.run_path = real_run_path

    module.__dict__["_fixup_main_from_path"] = _fixup_main_from_path


def patch_mp_pool(module: ModuleType) -> None:
    original = module.worker

    def worker(*args: Any, **kwargs: Any) -> Any:
        recorder.S.sync_sessions = True  # Pool.terminate() SIGTERMs idle workers
        lineage.process = None  # a worker serves any session: each task carries its own link
        return original(*args, **kwargs)

    # Pickled by reference for spawn: keep the name pickle looks up.
    worker.__module__, worker.__qualname__, worker.__name__ = module.__name__, "worker", "worker"
    worker.__wrapped__ = original  # type: ignore[attr-defined]
    module.__dict__["worker"] = worker
