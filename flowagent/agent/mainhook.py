"""Records the main script's functions while the interpreter itself runs the script.

``python script.py`` compiles the script without the import system, so no import hook sees
it. Running it ourselves (``runpy``-like) would put our frames below the program's module
(``inspect.stack()[-1]`` would be ours, the recursion limit would be reached earlier,
uncaught exceptions, ``sys.excepthook`` and the death by SIGINT would be our imitation).
Instead the launcher starts ``python script.py`` unchanged, and an audit hook watches for
the ``exec`` event CPython raises with the script's code object just before running it.
The hook swaps the code objects of the script's functions and classes -- constants of that
code object, not yet used -- for their instrumented twins (:mod:`codecache`). The module's
own bytecode stays the interpreter's; only function bodies change, as the ``wrap`` backend
does for imported modules.

The same event comes for every script another runner executes in the process by its path
(``coverage run script.py``, ``runpy.run_path``): the script named by ``sys.argv[0]`` is
instrumented there too. Code that already carries instrumentation (a module imported
through our finder) is left alone.

With another backend (``profile``, ``monitor``), which sees the script's functions as they
run, the same event is only the main thread's point to load the batch codec before the
script records (:meth:`Transport.prepare_encoder`): nothing is swapped.

An audit hook cannot be removed; this one returns at once for every event but ``exec``.
It never raises (an exception would fail the audited operation).
"""

from __future__ import annotations

import os
import sys
from types import CodeType

from . import audit, recorder, runstate
from .helpernames import OPENERS
from .guard import program_exception

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

_wants: Callable[[str], bool] | None = None
_nested = True
_done: set[str] = set()
_set_const: Callable[[CodeType, int, Any], None] | None = None
_instrument = True


def install(wants: Callable[[str], bool], nested: bool, instrument: bool = True) -> bool:
    """Start watching (idempotent); ``wants(path)`` says whether a script is recorded.
    ``instrument`` False: the backend records the script itself, only the codec loads here.
    False when constants cannot be replaced here (then the launcher's shim is needed)."""
    global _wants, _nested, _set_const, _instrument
    _instrument = instrument
    if instrument and _set_const is None:
        _set_const = _const_setter()
        if _set_const is None:
            return False
    first = _wants is None
    _wants, _nested = wants, nested
    if first:
        audit.watch(_hook, frozenset({"exec"}))
    return True


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "exec" or _wants is None:
        return
    try:
        code = args[0]
        if type(code) is not CodeType or code.co_name != "<module>":
            return
        argv0 = sys.argv[0] if sys.argv else ""
        filename = code.co_filename
        if not argv0 or os.path.basename(filename) != os.path.basename(argv0):
            return
        path = os.path.realpath(filename)
        if path != os.path.realpath(argv0) or not os.path.isfile(path) or not _wants(path):
            return
        if _instrument:
            if _instrumented(code) or not _instrument_in_place(code, path):
                return
        elif not any(type(c) is CodeType for c in code.co_consts):
            return
        # The script defines something to record, and has not started: the batch codec
        # loads now, in the main thread (see Transport.prepare_encoder). Without it a
        # script recording much would fill the ring with uncompressed batches.
        transport = runstate.transport
        if transport is not None:
            transport.prepare_encoder()
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        recorder.S.agent_errors += 1


def _instrumented(code: CodeType) -> bool:
    """Does any function in this code tree call the recorder (already instrumented)?"""
    for c in code.co_consts:
        if type(c) is CodeType and (any(h in c.co_names for h in OPENERS)
                                    or _instrumented(c)):
            return True
    return False


def _instrument_in_place(code: CodeType, path: str) -> int:
    """How many of the script's function or class bodies were swapped for their twins."""
    from .codecache import instrumented_code

    with open(path, "rb") as f:
        source = f.read()
    twin, _ = instrumented_code(source, path, "__main__", _nested, main=True)
    return _swap(code, twin)


def _swap(code: CodeType, twin: CodeType) -> int:
    """Each function or class body constant of ``code`` replaced by its twin in ``twin``
    (matched by name and first line, in order: two lambdas can share a line); the bodies'
    own constants come with the twin. Code the rewrite left alone (a lambda, a
    comprehension) keeps its original. Returns how many were replaced."""
    assert _set_const is not None
    swapped = 0
    theirs: dict[tuple[str, int], list[CodeType]] = {}
    for c in twin.co_consts:
        if type(c) is CodeType:
            theirs.setdefault((c.co_name, c.co_firstlineno), []).append(c)
    for i, c in enumerate(code.co_consts):
        if type(c) is not CodeType:
            continue
        candidates = theirs.get((c.co_name, c.co_firstlineno))
        if not candidates:
            continue
        t = candidates.pop(0)
        if (any(h in t.co_names for h in OPENERS) or _instrumented(t)) \
                and _compatible(c, t):
            _set_const(code, i, t)
            swapped += 1
    return swapped


def _compatible(a: CodeType, b: CodeType) -> bool:
    """The module's bytecode builds the function from the constant: the calling convention
    and the closure it expects must be the same."""
    return (a.co_argcount, a.co_posonlyargcount, a.co_kwonlyargcount, a.co_freevars,
            a.co_flags & _CALLING) == (b.co_argcount, b.co_posonlyargcount,
                                       b.co_kwonlyargcount, b.co_freevars, b.co_flags & _CALLING)


# CO_OPTIMIZED .. CO_ASYNC_GENERATOR: varargs, generator and coroutine kinds (not __future__)
_CALLING = 0x3FF


def _const_setter() -> Callable[[CodeType, int, Any], None] | None:
    try:
        from ._speedups import set_const

        return set_const
    except ImportError:
        pass
    try:
        import ctypes
    except ImportError:
        return None
    keep: list[Any] = []  # replaced constants stay alive: nothing here touches refcounts
    item0 = tuple.__basicsize__
    width = tuple.__itemsize__

    def set_const_by_ctypes(code: CodeType, i: int, value: Any) -> None:
        consts = code.co_consts
        if not 0 <= i < len(consts):
            raise IndexError(i)
        keep.append(consts[i])
        keep.append(value)
        ctypes.c_void_p.from_address(id(consts) + item0 + i * width).value = id(value)

    return set_const_by_ctypes
