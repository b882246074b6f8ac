"""Instrumented functions that leave the process still run where nothing records them.

cloudpickle and dill pickle a function of ``__main__`` (or any function they cannot import)
*by value*: its code object travels, constants included, and runs in a worker (Dask, Ray,
Spark, loky, joblib) that may not be recorded. The rewritten body calls ``__fa_call__`` and
its siblings from :mod:`builtins`, which only a recorded process has: the worker would fail
with ``NameError: name '__fa_call__' is not defined``.

So every instrumented code object carries one extra, unused constant, :data:`MARKER`.
Pickled by value with the code, it unpickles by running a few lines of plain Python (no
import of flowagent, which the worker may not have) that give the worker's builtins
do-nothing helpers under the missing names -- only the missing ones: a recorded worker keeps
its own. The function then runs exactly as its original.
"""

from __future__ import annotations

from types import CodeType

from .helpernames import HELPERS  # not from instrument: a cache hit never needs ast

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

# Run when the marker is unpickled: each helper that builtins lack becomes a no-op with
# the same calling convention (see instrument.py for what each one does).
_FALLBACKS = """
import builtins

class _Off:
    __slots__ = ()
    def __enter__(self):
        return None
    def __exit__(self, *exc):
        return None

_off = _Off()
for _name, _fn in (
        ("__fa_call__", lambda fid, *args: _off),
        ("__fa_gcall__", lambda fid, *args: _off),
        ("__fa_ret__", lambda fid, value: value),
        ("__fa_own__", lambda fid: None),
        ("__fa_suspend__", lambda fid, value=None, kind=None: value),
        ("__fa_asuspend__", lambda fid, value=None: value),
        ("__fa_resume__", lambda frame, sent=None: sent),
        ("__fa_delegate__", lambda fid, iterable: iterable),
        ("__fa_lcall__", lambda fid, *args: None),
        ("__fa_lret__", lambda frame, value: value),
        ("__fa_reenter__", lambda fid: None)):
    builtins.__dict__.setdefault(_name, _fn)
"""


class _Marker:
    """The extra constant; pickles as ``exec(_FALLBACKS, {})``."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        return exec, (_FALLBACKS, {})

    def __repr__(self) -> str:
        return "<flowagent helpers>"


MARKER = _Marker()


def mark(code: CodeType) -> CodeType:
    """``code`` with the marker added to every instrumented code object in its tree."""
    consts = code.co_consts
    new: list[Any] | None = None
    for i, c in enumerate(consts):
        if type(c) is CodeType:
            r = mark(c)
            if r is not c:
                if new is None:
                    new = list(consts)
                new[i] = r
    calls_helpers = any(h in code.co_names for h in HELPERS)
    if new is None and not calls_helpers:
        return code
    out = list(consts) if new is None else new
    if calls_helpers:
        out.append(MARKER)
    return code.replace(co_consts=tuple(out))
