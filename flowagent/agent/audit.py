"""The agent's audit hook, shared by the parts that watch the program's audit events: the
main script's instrumentation (``exec``) and, on Python 3.13, the flusher's restart after a
fork (every event until the program goes on). (The opt-in ``profile`` backend keeps a Python
hook of its own: it re-installs its profile function from inside the hook.)

An audit hook cannot be removed, and a Python one is a Python call for every audited event of
the program for the rest of its life, wanted or not: ``id()`` (``copy.deepcopy`` calls it per
object), ``sys._getframe``, ``open``... With the C extension the hook is C and hands the
dispatcher only the events some part watches (every event only while one wants them all);
without it (the pure-Python twin), a Python hook filters the same way. The hook is added once,
when the agent starts, so a hook the program adds later never sees its addition.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

    Hook = Callable[[str, tuple[Any, ...]], None]


class Watch:
    """One part's interest: ``events`` always, every event while ``everything``."""

    __slots__ = ("hook", "events", "everything")

    def __init__(self, hook: Hook, events: frozenset[str], everything: bool) -> None:
        self.hook = hook
        self.events = events
        self.everything = everything


_watches: list[Watch] = []
_names: frozenset[str] = frozenset()
_all = False
_watch_c: Callable[[tuple[str, ...], bool], None] | None = None
_installed = False


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    for w in _watches:
        if w.everything or event in w.events:
            w.hook(event, args)


def _python_hook(event: str, args: tuple[Any, ...]) -> None:
    if _all or event in _names:
        _dispatch(event, args)


def watch(hook: Hook, events: frozenset[str] = frozenset(), everything: bool = False) -> Watch:
    """Call ``hook(event, args)`` for ``events`` (and for every event while the returned
    watch's ``everything`` is set with :func:`want_everything`)."""
    global _installed, _watch_c
    w = Watch(hook, events, everything)
    _watches.append(w)
    if not _installed:
        _installed = True
        speedups = _c_hook()
        if speedups is not None:
            speedups.audit_install(_dispatch)
            _watch_c = speedups.audit_watch
        else:
            sys.addaudithook(_python_hook)
    _refresh()
    return w


def want_everything(w: Watch, on: bool) -> None:
    if w.everything != on:
        w.everything = on
        _refresh()


def _refresh() -> None:
    global _names, _all
    _names = frozenset().union(*(w.events for w in _watches))
    _all = any(w.everything for w in _watches)
    if _watch_c is not None:
        _watch_c(tuple(sorted(_names)), _all)


def _c_hook() -> Any:
    """The C extension when it offers the hook and the C twin is in use, else None."""
    from . import recorder

    speedups = recorder._speedups
    return speedups if speedups is not None and hasattr(speedups, "audit_install") else None
