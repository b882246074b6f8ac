"""Instrumentation backends behind one small interface, and the one place that picks one.

* ``wrap``: rewrites function bodies at import time (see :mod:`instrument`). Sees functions
  captured by decorator registries, costs no extra frame, and knows exception types.
* ``profile``: ``sys.setprofile`` + ``threading.setprofile``, filtered once per code object.
  Needs no import hook, so it also sees modules imported before the agent started, but it
  pays a Python callback on *every* call of the program (selected or not) and cannot see
  which exception unwound a frame (reported as ``?``).

Callers read :class:`Capabilities` rather than checking which backend they have.
"""

from __future__ import annotations

import dis
import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from . import recorder
from .importer import Finder, PostImportHook
from .select import Selector


@dataclass(frozen=True)
class Capabilities:
    exception_types: bool      # the recorded exception type is the real one
    instruments_main: bool     # needs the runmain shim to see the main script


class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def install(self, selector: Selector, nested: bool) -> None: ...
    def uninstall(self) -> None: ...
    def add_post_import_hook(self, module: str, hook: PostImportHook) -> None: ...


class _HooksMixin:
    finder: Finder | None = None
    _post_import: dict[str, list[PostImportHook]]

    def add_post_import_hook(self, module: str, hook: PostImportHook) -> None:
        if module in sys.modules:  # already imported (e.g. before the agent started)
            try:
                hook(sys.modules[module])
            except Exception:
                recorder.S.agent_errors += 1
            return
        self._post_import.setdefault(module, []).append(hook)


class WrapBackend(_HooksMixin):
    name = "wrap"
    capabilities = Capabilities(exception_types=True, instruments_main=True)

    def __init__(self) -> None:
        self._post_import = {}

    def install(self, selector: Selector, nested: bool) -> None:
        self.finder = Finder(selector, nested, self._post_import)
        self.finder.install()

    def uninstall(self) -> None:
        if self.finder is not None:
            self.finder.uninstall()


class _NothingSelected(Selector):
    def __init__(self) -> None:
        super().__init__((), (), ())

    def wants_name(self, name: str) -> bool | None:
        return False


_GEN_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coro, async gen
_YIELD = dis.opmap["YIELD_VALUE"]
_RETURNS = {dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in dis.opmap}


class ProfileBackend(_HooksMixin):
    name = "profile"
    capabilities = Capabilities(exception_types=False, instruments_main=False)

    def __init__(self) -> None:
        self._post_import = {}
        self._codes: dict[Any, int] = {}
        self._live: dict[Any, list] = {}   # python frame -> recorder frame
        self._selector: Selector | None = None
        self._nested = True

    def install(self, selector: Selector, nested: bool) -> None:
        self._selector = selector
        self._nested = nested
        self.finder = Finder(_NothingSelected(), nested, self._post_import)
        self.finder.install()
        sys.setprofile(self._callback)
        threading.setprofile(self._callback)

    def uninstall(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        if self.finder is not None:
            self.finder.uninstall()

    def _classify(self, frame: Any, code: Any) -> int:
        fid = 0
        try:
            name = code.co_name
            qual = getattr(code, "co_qualname", name)
            module = frame.f_globals.get("__name__") or "?"
            # CO_OPTIMIZED: real functions only, not class bodies or modules; and only code
            # from a source file (not `<string>`: dataclass- or namedtuple-generated code).
            if code.co_flags & 0x01 and not name.startswith("<") \
                    and not code.co_filename.startswith("<") and (self._nested or "<locals>" not in qual) \
                    and self._selector is not None \
                    and self._selector.wants(module, code.co_filename):
                n = code.co_argcount + code.co_kwonlyargcount
                flags = code.co_flags
                names = list(code.co_varnames[:n])
                if flags & 0x04:
                    names.insert(code.co_argcount, "*" + code.co_varnames[n])
                    n += 1
                if flags & 0x08:
                    names.append("**" + code.co_varnames[n])
                kind = ("async_generator" if flags & 0x200 else "async" if flags & 0x80
                        else "generator" if flags & 0x20 else "function")
                accessor = _property_accessor(frame.f_globals, qual, code)
                if accessor:
                    qual, kind = f"{qual}.{accessor}", "property"
                fid = recorder.register_function(module, qual, code.co_filename,
                                                 code.co_firstlineno, tuple(names), kind)
        except Exception:
            recorder.S.agent_errors += 1
        self._codes[code] = fid
        return fid

    def _callback(self, frame: Any, event: str, arg: Any) -> None:
        if event[1] == "_":
            return  # c_call / c_return / c_exception: builtins are never recorded
        code = frame.f_code
        fid = self._codes.get(code)
        if fid is None:
            fid = self._classify(frame, code)
        if not fid:
            return
        live = self._live
        if event == "call":
            rec = live.get(frame)
            if rec is not None:  # a generator or coroutine being resumed
                if _op(code, frame.f_lasti) == _YIELD:
                    # Resumed *at* the yield: close() or throw(). 3.12 passes the exception.
                    rec[_THROWN] = (frame.f_lasti, type(arg) if isinstance(
                        arg, BaseException) else GeneratorExit)
                recorder.resume(rec)
                return
            try:
                loc = frame.f_locals
                args = tuple(loc.get(p.lstrip("*")) for p in recorder.function_params(fid))
            except Exception:
                args = ()
            rec = recorder.open_call(fid, args)
            if rec is not None:
                rec.append(None)  # _THROWN slot
                live[frame] = rec
        elif event == "return":
            rec = live.get(frame)
            if rec is None:
                return
            flags = code.co_flags
            op = _op(code, frame.f_lasti)
            thrown = rec[_THROWN]
            if op == _YIELD and flags & _GEN_FLAGS and not (thrown and thrown[0] == frame.f_lasti):
                rec[_THROWN] = None
                if flags & 0x200:  # async generator: only wrapped values are real yields
                    if type(arg).__name__ == "async_generator_wrapped_value":
                        _note(rec, _unwrap(arg), "AsyncIterator")
                        recorder.deactivate(rec)
                elif flags & 0x20:  # generator (a coroutine's awaits keep it current)
                    _note(rec, arg, "Iterator")
                    recorder.deactivate(rec)
                return
            del live[frame]
            if thrown and thrown[0] == frame.f_lasti:
                recorder.close_call(rec, thrown[1])
            elif op in _RETURNS:
                rec[recorder.RV] = arg
                recorder.close_call(rec, None)
            else:
                recorder.close_call(rec, recorder.UnknownError)


_THROWN = recorder.CPU + 1  # extra slot on profile-backend frames


def _property_accessor(globs: dict, qual: str, code: Any) -> str:
    """'setter'/'deleter' when ``code`` is a property's fset/fdel (same qualname as fget)."""
    parts = qual.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return ""
    obj: Any = globs.get(parts[0])
    for part in parts[1:-1]:
        obj = getattr(obj, "__dict__", {}).get(part)
    prop = getattr(obj, "__dict__", {}).get(parts[-1])
    if isinstance(prop, property):
        for name, fn in (("setter", prop.fset), ("deleter", prop.fdel)):
            if getattr(fn, "__code__", None) is code:
                return name
    return ""


def _op(code: Any, lasti: int) -> int:
    try:
        return code.co_code[lasti]
    except (IndexError, TypeError):
        return -1


def _note(rec: list, value: Any, kind: str) -> None:
    try:
        recorder._note_yield(rec, value, kind)
    except Exception:
        recorder.S.agent_errors += 1


def _unwrap(wrapped: Any) -> Any:
    """The value inside an async generator's yield wrapper (visible to gc only)."""
    import gc

    refs = gc.get_referents(wrapped)
    return refs[0] if refs else None


def choose(requested: str) -> tuple[Backend, str]:
    """The single place that decides which backend records, and says why."""
    if requested == "profile":
        return ProfileBackend(), "requested with --backend profile"
    if requested == "monitor":
        return WrapBackend(), ("the monitor backend is not available in this version; "
                               "using wrap (import-time instrumentation)")
    if requested == "wrap":
        return WrapBackend(), "requested with --backend wrap"
    return WrapBackend(), ("auto: wrap instruments function bodies at import time, so "
                           "decorator registries see recorded functions and no call pays "
                           "an extra frame")
