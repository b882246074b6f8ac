"""Child processes join the session of the call that started them (see :mod:`..lineage`).

How the parent call's link reaches the child, per way of starting one:

* ``fork`` (``os.fork``, multiprocessing's fork start method, pool workers forked): at-fork
  hooks capture the current call in the parent just before the fork; the child adopts it.
* anything that ``exec``s (``subprocess``, multiprocessing's spawn and forkserver start
  methods, which start their interpreters through ``_posixsubprocess.fork_exec``): the link
  goes into the child's environment as ``FLOWAGENT_PARENT``, and only when the child inherits
  the run's environment (``env=None``, or an ``env`` that carries the run's variables), so a
  child the program deliberately cut off from the run stays so.
* multiprocessing spawn and forkserver children also find it in multiprocessing's own
  preparation data, which is what a forkserver's children (forked from a long-lived server
  process, not from the caller) are told.
* long-lived pool workers (``multiprocessing.Pool``, ``ProcessPoolExecutor``) serve tasks of
  any session, so each task submitted from inside a call carries its own link: the
  submitted callable travels wrapped in a :class:`Carrier`, which unpickles in the worker as
  ``functools.partial(context.run, callable)`` with the link set in that context. Both are
  C callables, so a traceback the task raises (which the pool sends back to the caller as
  text) holds no frame of ours.

Nothing the program sees changes: its own objects pickle as before (the carrier is only
ever pickled by the pool's machinery), process names, exit codes and output are untouched.
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
from types import ModuleType

from .. import lineage, recorder

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

PREPARATION_KEY = "flowagent_parent"
_RUN_DIR = b"FLOWAGENT_RUN_DIR="
_ENV_ENTRY = lineage.ENV.encode() + b"="


class Carrier:
    """A pool task's callable with the link of the call that submitted it (see module doc).

    Called in-process (a pool that does not pickle), it simply calls the callable."""

    __slots__ = ("fn", "link")

    def __init__(self, fn: Callable[..., Any], link: lineage.Link) -> None:
        self.fn = fn
        self.link = link

    def __reduce__(self) -> tuple[Any, ...]:
        return _resume, (self.fn, lineage.encode(self.link))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _resume(fn: Callable[..., Any], link: str) -> Callable[..., Any]:
    """In the worker: ``fn`` to run in a copy of the current context that holds the link."""
    try:
        decoded = lineage.decode(link)
        if decoded is None:
            return fn
        ctx = contextvars.copy_context()
        ctx.run(lineage._task.set, decoded)
        return functools.partial(ctx.run, fn)
    except Exception:
        recorder.S.agent_errors += 1
        return fn


def _carried(fn: Any) -> Any:
    try:
        link = lineage.here()
        if link is not None and not isinstance(fn, Carrier):
            return Carrier(fn, link)
    except Exception:
        recorder.S.agent_errors += 1
    return fn


# -- environment of exec'd children ---------------------------------------------------------

def _env_with_link(env: Any, link: lineage.Link) -> Any:
    """``env`` (fork_exec's list of ``b"KEY=value"``, or None for this process's own) with
    the link added, or ``env`` itself when the child is not meant to join the run."""
    if env is None:
        items = [k + b"=" + v for k, v in os.environb.items()]
    elif isinstance(env, (list, tuple)):
        items = list(env)
        if not any(isinstance(e, bytes) and e.startswith(_RUN_DIR) for e in items):
            return env
    else:
        return env
    items = [e for e in items if not (isinstance(e, bytes) and e.startswith(_ENV_ENTRY))]
    items.append(_ENV_ENTRY + os.fsencode(lineage.encode(link)))
    return items


def _fork_exec_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def fork_exec(*args: Any) -> Any:
        try:
            if len(args) > 5:
                link = lineage.here()
                if link is not None:
                    args = (*args[:5], _env_with_link(args[5], link), *args[6:])
        except Exception:
            recorder.S.agent_errors += 1
        return original(*args)

    fork_exec.__wrapped__ = original  # type: ignore[attr-defined]
    fork_exec._flowagent_patch = True  # type: ignore[attr-defined]
    return fork_exec


def _patch_fork_exec(module: Any, name: str) -> None:
    original = getattr(module, name, None)
    if original is not None and not getattr(original, "_flowagent_patch", False):
        setattr(module, name, _fork_exec_wrapper(original))


def patch_subprocess(module: ModuleType) -> None:
    _patch_fork_exec(module, "_fork_exec")  # bound at import from _posixsubprocess
    # From Python 3.13 on, Popen starts a child given by path through os.posix_spawn even
    # with close_fds (where the C library can close from a descriptor on): that path takes no
    # fork_exec, so the link could not travel. Children start through fork_exec as on 3.12;
    # what the program sees of the child is the same.
    if getattr(module, "_USE_POSIX_SPAWN", False) and sys.version_info >= (3, 13):
        module._USE_POSIX_SPAWN = False


# -- multiprocessing ------------------------------------------------------------------------

def patch_mp_spawn(module: ModuleType) -> None:
    """Preparation data carries the link (parent side); ``prepare`` adopts it (child side)."""
    get_data, prepare = module.get_preparation_data, module.prepare
    if getattr(prepare, "_flowagent_patch", False):
        return

    def get_preparation_data(name: Any) -> Any:
        data = get_data(name)
        try:
            link = lineage.here()
            if link is not None:
                data[PREPARATION_KEY] = lineage.encode(link)
        except Exception:
            recorder.S.agent_errors += 1
        return data

    def prepare_(data: Any) -> Any:
        try:
            # Always: a forkserver's child would otherwise keep the server's own link.
            lineage.adopt(data.pop(PREPARATION_KEY, None))
        except Exception:
            recorder.S.agent_errors += 1
        return prepare(data)

    for new, old in ((get_preparation_data, get_data), (prepare_, prepare)):
        new.__module__, new.__qualname__, new.__name__ = old.__module__, old.__qualname__, \
            old.__name__
        new.__wrapped__ = old  # type: ignore[union-attr]
        new._flowagent_patch = True  # type: ignore[union-attr]
    module.__dict__["get_preparation_data"] = get_preparation_data
    module.__dict__["prepare"] = prepare_


def patch_mp_pool(module: ModuleType) -> None:
    """Pool tasks submitted from inside a call carry its link (process pools only: a
    ``ThreadPool`` runs the callable in this process)."""
    cls = module.Pool
    thread_pool = getattr(module, "ThreadPool", None)
    apply_async = cls.__dict__.get("apply_async")
    generate = cls.__dict__.get("_guarded_task_generation")
    if apply_async is None or generate is None or getattr(apply_async, "_flowagent_patch", False):
        return

    def _is_process_pool(pool: Any) -> bool:
        return thread_pool is None or not isinstance(pool, thread_pool)

    def apply_async_(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_process_pool(self):
            func = _carried(func)
        return apply_async(self, func, *args, **kwargs)

    def _guarded_task_generation(self: Any, result_job: Any, func: Any, *args: Any) -> Any:
        if _is_process_pool(self):
            func = _carried(func)
        return generate(self, result_job, func, *args)

    for new, old in ((apply_async_, apply_async), (_guarded_task_generation, generate)):
        new.__qualname__, new.__name__, new.__doc__ = old.__qualname__, old.__name__, old.__doc__
        new.__wrapped__ = old  # type: ignore[union-attr]
        new._flowagent_patch = True  # type: ignore[union-attr]
    cls.apply_async = apply_async_
    cls._guarded_task_generation = _guarded_task_generation


def patch_process_pool(module: ModuleType) -> None:
    cls = module.ProcessPoolExecutor
    submit = cls.__dict__.get("submit")
    if submit is None or getattr(submit, "_flowagent_patch", False):
        return

    def submit_(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, _carried(fn), *args, **kwargs)

    submit_.__qualname__, submit_.__name__, submit_.__doc__ = \
        submit.__qualname__, submit.__name__, submit.__doc__
    submit_.__wrapped__ = submit  # type: ignore[attr-defined]
    submit_._flowagent_patch = True  # type: ignore[attr-defined]
    cls.submit = submit_


def install() -> None:
    """Adopt this process's own link, and pass links on to the children it starts."""
    lineage.adopt(os.environ.get(lineage.ENV))
    try:
        import _posixsubprocess
    except ImportError:
        return
    _patch_fork_exec(_posixsubprocess, "fork_exec")


HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "subprocess": patch_subprocess,
    "multiprocessing.spawn": patch_mp_spawn,
    "multiprocessing.pool": patch_mp_pool,
    "concurrent.futures.process": patch_process_pool,
}
