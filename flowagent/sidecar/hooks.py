"""User hooks, run in the sidecar (never in the recorded program).

A hook is a callable ``hook(event, data)`` named as ``"package.module:function"`` in the
``hooks`` setting, or registered in the ``flowagent.hooks`` entry-point group. ``event`` is
``"session"`` (``data``: one finished session's summary, see :func:`session_payload`) or
``"run_end"`` (``data``: the run's totals).
A hook that fails to load or raises is reported in the run summary and the store; it never
stops ingestion.
"""

from __future__ import annotations

import functools
import importlib
import sys

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, TypedDict

    from .sessiontree import Contribution

    # a hook receives a plain dict: SessionPayload for "session", the run's totals for
    # "run_end"
    Hook = Callable[[str, Mapping[str, Any]], Any]
else:
    TypedDict = dict  # SessionPayload documents a plain dict's keys

GROUP = "flowagent.hooks"


def may_have_entry_points(group: str) -> bool:
    """False only when no installed distribution on ``sys.path`` can declare an entry point
    of ``group``: no ``entry_points.txt`` of a ``*.dist-info`` or ``*.egg-info`` directory
    names it. ``importlib.metadata`` reads every distribution's metadata with the email
    parser (~100 ms where the sidecar starts beside a short program); this reads a few small
    files. True (ask importlib.metadata) whenever it cannot tell: a finder other than the
    path finder that lists distributions, a path entry that is not a directory."""
    import importlib.machinery
    import os

    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions") and \
                finder is not importlib.machinery.PathFinder:
            return True
    marker = f"[{group}]"
    for entry in sys.path:
        entry = entry or "."
        try:
            names = os.listdir(entry)
        except NotADirectoryError:
            return True  # a zip file on the path
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry, name, "entry_points.txt"),
                          encoding="utf-8", errors="replace") as f:
                    if marker in f.read():
                        return True
            except OSError:
                continue
    return False


class Hooks:
    def __init__(self, specs: list[str], entry_points: bool = True) -> None:
        self.hooks: list[tuple[str, Hook]] = []
        self.errors = 0
        self.first_error = ""
        for spec in specs:
            self._load(spec, functools.partial(_resolve, spec))
        if entry_points and may_have_entry_points(GROUP):
            try:
                from importlib.metadata import entry_points as eps

                for ep in eps(group=GROUP):
                    self._load(f"{ep.name} (entry point {ep.value})", ep.load)
            except Exception as exc:  # a broken distribution's metadata
                self._fail("flowagent.hooks entry points", exc)

    def _load(self, label: str, loader: Callable[[], Any]) -> None:
        try:
            fn = loader()
            if not callable(fn):
                raise TypeError(f"{label} is not callable")
            self.hooks.append((label, fn))
        except Exception as exc:
            self._fail(f"loading hook {label}", exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{what}: {type(exc).__name__}: {exc}"
            sys.stderr.write(f"flowagent sidecar: {self.first_error}\n")
            import traceback  # only on failure: it costs the sidecar's start a few ms

            traceback.print_exc(file=sys.stderr)

    def _call(self, event: str, data: Mapping[str, Any]) -> None:
        for label, fn in self.hooks:
            try:
                fn(event, data)
            except Exception as exc:
                self._fail(f"hook {label} on {event}", exc)

    def session(self, data: SessionPayload) -> None:
        self._call("session", data)

    def run_end(self, data: dict[str, Any]) -> None:
        self._call("run_end", data)

    def __bool__(self) -> bool:
        return bool(self.hooks) or bool(self.errors)


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class SessionPayload(TypedDict):
    """What a ``session`` hook receives (a plain dict of these keys)."""

    session_id: str
    run_id: str
    name: str
    result: str
    complete: bool
    pid: int
    started_ns: int
    duration_ns: int
    calls: int
    errors: int
    variant: str
    functions: list[str]            # distinct function names, sorted
    function_calls: dict[str, int]  # function name -> calls in this session


def session_payload(session_id: str, run_id: str, name: str, result: str, complete: bool,
                    pid: int, started_ns: int, duration_ns: int, calls: int, errors: int,
                    contrib: "Contribution", names: dict[int, str]) -> SessionPayload:
    """What a ``session`` hook receives: the session's summary and the functions it called.

    ``functions`` (distinct names, sorted) and ``function_calls`` (name -> calls) come from
    the session's own statistics, so they are complete and the same on every run of the same
    recording: never read back from the store, where a function defined in the frame that
    also ended the session is not yet visible.
    """
    per_fn: dict[str, int] = {}
    for fid, stats in contrib.nodes.items():
        fn = names.get(fid, "?")
        per_fn[fn] = per_fn.get(fn, 0) + stats[0]
    return {
        "session_id": session_id, "run_id": run_id, "name": name, "result": result,
        "complete": complete, "pid": pid, "started_ns": started_ns, "duration_ns": duration_ns,
        "calls": calls, "errors": errors, "variant": contrib.variant,
        "functions": sorted(per_fn), "function_calls": dict(sorted(per_fn.items())),
    }
