"""Context travels with work: a thread started, or a callable handed to a thread pool, from
inside a recorded call runs as part of that call's session, nested under it (its calls keep
their own thread, so each thread is its own timeline of the one session).

* Threads: the low-level start function that ``Thread.start()`` calls gets the call current
  in the starting thread; the new thread begins with it current. Pool worker threads
  (``concurrent.futures``, ``multiprocessing.pool``) are left alone: they outlive the call
  that happened to start them and serve later submissions of any session.
* ``ThreadPoolExecutor.submit`` (so ``loop.run_in_executor`` too): the callable runs in a
  fresh :class:`contextvars.Context` holding only the submitting call, through the
  context's own C ``run`` method, so no agent frame appears in a traceback the callable
  raises, and no other context variable of the submitter leaks into the worker.
  ``asyncio.to_thread`` copies the caller's context itself and needs nothing.
"""

from __future__ import annotations

import contextvars
from threading import get_ident as _get_ident
from types import ModuleType

from .. import recorder

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

_POOL_MODULES = frozenset(("concurrent.futures.thread", "multiprocessing.pool"))


def _starts_pool_worker(function: Any) -> bool:
    thread = getattr(function, "__self__", None)  # Thread._bootstrap, a bound method
    try:
        target = vars(thread).get("_target") if thread is not None else None
        return getattr(target, "__module__", None) in _POOL_MODULES
    except TypeError:
        return False


def _carry(parent: list[Any], function: Callable[..., Any]) -> Callable[..., Any]:
    thread = getattr(function, "__self__", None)
    name = vars(thread).get("_name") if thread is not None else None

    def bootstrap(*args: Any, **kwargs: Any) -> Any:
        try:
            if type(name) is str:
                names = recorder.thread_names
                if len(names) > 4096:  # threads that never recorded a call: forget them
                    names.clear()
                names[_get_ident()] = name
            recorder._set(parent)
        except Exception:
            recorder.S.agent_errors += 1
        return function(*args, **kwargs)

    return bootstrap


def _start_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def start_new_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            parent = recorder._get()
            if parent is not None and not _starts_pool_worker(function):
                function = _carry(parent, function)
        except Exception:
            recorder.S.agent_errors += 1
        return original(function, *args, **kwargs)

    start_new_thread.__wrapped__ = original  # type: ignore[attr-defined]
    start_new_thread._flowagent_patch = True  # type: ignore[attr-defined]
    return start_new_thread


def patch_threading(module: ModuleType) -> None:
    # 3.13 starts threads with _start_joinable_thread, 3.11 and 3.12 with _start_new_thread.
    for name in ("_start_joinable_thread", "_start_new_thread"):
        original = module.__dict__.get(name)
        if original is not None and not getattr(original, "_flowagent_patch", False):
            setattr(module, name, _start_wrapper(original))
            return


def _submit_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        parent = recorder._get()
        if parent is None:
            return original(self, fn, *args, **kwargs)
        ctx = contextvars.Context()
        ctx.run(recorder._set, parent)
        return original(self, ctx.run, fn, *args, **kwargs)

    submit.__wrapped__ = original  # type: ignore[attr-defined]
    submit._flowagent_patch = True  # type: ignore[attr-defined]
    return submit


def patch_thread_pool(module: ModuleType) -> None:
    cls = module.ThreadPoolExecutor
    original = cls.__dict__.get("submit")
    if original is not None and not getattr(original, "_flowagent_patch", False):
        cls.submit = _submit_wrapper(original)


HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "threading": patch_threading,
    "concurrent.futures.thread": patch_thread_pool,
}
