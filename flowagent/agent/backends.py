"""Instrumentation backends behind one small interface, and the one place that picks one.

* ``wrap``: rewrites function bodies at import time (see :mod:`instrument`). Sees functions
  captured by decorator registries, costs no extra frame, and knows exception types.
* ``profile``: ``sys.setprofile`` + ``threading.setprofile``, filtered once per code object.
  Needs no import hook, so it also sees modules imported before the agent started, but it
  pays a Python callback on *every* call of the program (selected or not) and cannot see
  which exception unwound a frame (reported as ``?``).
* ``monitor`` (Python 3.12+): ``sys.monitoring`` events on the selected code objects only
  (see :mod:`monitor`); other code is disabled after its first call. Sees modules imported
  before the agent started and knows exception types. Its callbacks are C functions
  (``_cores.MonitorCore``) where the extension is built.

The ``profile`` backend's profile function is C too (``_cores.ProfileCore``: one code-extra
slot read per unrecorded call). :func:`choose` is the one place that picks, and ``auto``
picks the cheapest core that keeps the semantics, by measurement (:func:`_auto` says why).

Callers read :class:`Capabilities` rather than checking which backend they have.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from _thread import get_ident as _thread_ident
from opcode import opmap

from . import recorder
from .backendapi import Backend, Capabilities, HooksMixin
from .codeinfo import (CO_ASYNC_GENERATOR, CO_GENERATOR, GENERATOR_FLAGS, CodeSelector,
                       is_async_yield, note_yield, unwrap_async_yield)
from .select import Selector
from .guard import program_exception

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any


class WrapBackend(HooksMixin):
    name = "wrap"
    capabilities = Capabilities(exception_types=True, instruments_main=True)

    def __init__(self) -> None:
        self._post_import = {}

    def install(self, selector: Selector, nested: bool) -> None:
        self._install_finder(selector, nested)

    def uninstall(self) -> None:
        self._uninstall_finder()


_YIELD = opmap["YIELD_VALUE"]
_RESUME = opmap["RESUME"]
_RETURNS = {opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST") if n in opmap}
# Python 3.13 reports a suspension (yield, yield from, await) with the frame already past its
# YIELD_VALUE, on the RESUME that follows it (oparg 1-3 in its low bits; 0 is a function's
# first instruction): such a position is read as the yield itself.
_YIELD_AT_RESUME = sys.version_info >= (3, 13)


class ProfileBackend(HooksMixin):
    name = "profile"
    capabilities = Capabilities(exception_types=False, instruments_main=False)

    def __init__(self) -> None:
        self._post_import = {}
        self._codes: dict[Any, int] = {}
        self._live: dict[Any, list[Any]] = {}   # python frame -> recorder frame
        self._describe: Any = None
        self.cores, self.core = choose_profile_core()
        self._core: Any = None

    def install(self, selector: Selector, nested: bool) -> None:
        self._describe = CodeSelector(selector, nested).describe
        self._install_hooks_only(nested, selector)
        if self.cores is not None:
            # The C profile function decides once per code object (a code-extra slot) and
            # calls _handle for recorded code only; new threads switch to it on their first
            # event (the core is also a Python-level profile function).
            self._core = self.cores.ProfileCore(classify=self._classify, handle=self._handle,
                                                state=recorder.S, recover=self._recover)
            self._core.install()
            threading.setprofile(self._core)
            self._resume: Any = self._core.install
        else:
            self._setprofile = _profile_setter(self._recover)
            self._setprofile(self._callback)
            threading.setprofile(self._thread_start)
            self._resume = lambda: self._setprofile(self._callback)
        self.add_post_import_hook("cProfile", self._after_cprofile)
        # threads whose profile function may be the program's -> [since when (monotonic ns),
        # confirmed]: what they run meanwhile is not recorded; counted (intervals and their
        # length) and shown. The audit event comes before the change and does not say what
        # is set (threading sets ours again in a new thread): a displacement is confirmed
        # by a later event of the thread that finds another profile function, or none.
        self._displaced: dict[int, list[Any]] = {}
        self.recovered = 0
        self.displacements = 0
        self.displaced_ns = 0  # of the intervals that ended
        self._installed = True
        global _profile
        _profile = self
        # Its own Python hook, not the agent's shared C one: it must see every event while a
        # thread is displaced, and re-installs the profile function from inside the hook,
        # which needs the interpreter's handling of Python hooks (opt-in backend: its cost).
        sys.addaudithook(self._audit)

    def _ours(self, fn: Any) -> bool:
        return fn is not None and (fn == self._callback or fn == self._thread_start
                                   or (self._core is not None and fn is self._core))

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        """The program's ``sys.setprofile`` (or a profiler's ``enable()``) displaces the
        recorder in its thread: the audit event comes just before. The thread is taken back
        at its first audit event (an open, an import, a socket, another setprofile) that
        finds it without a profile function; cProfile's ``disable()`` hands it back at
        once. An audit hook cannot be removed: after uninstall() this returns at once."""
        if not (self._installed and (self._displaced or event == "sys.setprofile")):
            return
        try:
            ident = _thread_ident()
            current = sys.getprofile()
            entry = self._displaced.get(ident)
            if entry is None:
                if event == "sys.setprofile" and self._ours(current):
                    self._displaced[ident] = [time.monotonic_ns(), False]
            elif current is None:
                self._confirm(entry)
                self._taken_back(ident)
                self.recovered += 1
                self._resume()
            elif self._ours(current):
                self._taken_back(ident)  # taken back (cProfile's disable()), or never lost
            else:
                self._confirm(entry)
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            recorder.S.agent_errors += 1

    def _confirm(self, entry: list[Any]) -> None:
        if not entry[1]:
            entry[1] = True
            self.displacements += 1

    def _taken_back(self, ident: int) -> None:
        entry = self._displaced.pop(ident, None)
        if entry is not None and entry[1]:
            self.displaced_ns += time.monotonic_ns() - entry[0]

    def displaced(self) -> tuple[int, int]:
        """(times a thread's recording was displaced by the program's own profile function,
        total time displaced in ns, the intervals still going on counted up to now)."""
        now = time.monotonic_ns()
        ongoing = sum(now - e[0] for e in list(self._displaced.values()) if e[1])
        return self.displacements, self.displaced_ns + ongoing

    def restart_after_fork(self) -> None:
        """A forked child counts its own: the forking thread may still be displaced."""
        entry = self._displaced.get(_thread_ident())
        self._displaced.clear()
        self.displaced_ns = 0
        self.displacements = 0
        if entry is not None:
            self._displaced[_thread_ident()] = [time.monotonic_ns(), False]
            if entry[1]:
                self._confirm(self._displaced[_thread_ident()])

    def _after_cprofile(self, module: Any) -> None:
        """cProfile displaces the recorder while it profiles (one profile function per
        thread); when it stops and leaves none, the recorder takes the thread back."""
        profile = module.Profile
        disable = profile.disable
        backend = self

        def disable_and_resume(self: Any) -> None:
            disable(self)
            if sys.getprofile() is None:
                entry = backend._displaced.get(_thread_ident())
                if entry is not None:
                    backend._confirm(entry)
                backend._taken_back(_thread_ident())
                backend._resume()

        disable_and_resume.__name__ = disable_and_resume.__qualname__ = "disable"
        disable_and_resume.__doc__ = disable.__doc__
        profile.disable = disable_and_resume

    def _thread_start(self, frame: Any, event: str, arg: Any) -> None:
        """A new thread's first event (threading installs this with sys.setprofile): from
        now on the thread reports to the callback through the trampoline that keeps it."""
        self._setprofile(self._callback)
        self._callback(frame, event, arg)

    def uninstall(self) -> None:
        self._installed = False
        if self._core is not None:
            self._core.uninstall()
            self._core = None
        sys.setprofile(None)
        threading.setprofile(None)
        self._uninstall_finder()

    def _classify(self, frame: Any, code: Any) -> int:
        fid = 0
        try:
            if self._describe is not None:
                fid = self._describe(code, frame.f_globals)
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            recorder.S.agent_errors += 1
        self._codes[code] = fid
        return fid

    def _callback(self, frame: Any, event: str, arg: Any) -> None:
        if event[1] == "_":
            # c_call / c_return / c_exception: builtins are never recorded, but a generator's
            # throw() or close() says how the resumption that follows is to be read
            if event != "c_exception" and type(arg) is _BUILTIN_METHOD \
                    and type(getattr(arg, "__self__", None)) in _RESUMABLE:
                self._resumer(arg, event == "c_call")
            return
        code = frame.f_code
        fid = self._codes.get(code)
        if fid is None:
            fid = self._classify(frame, code)
        if fid:
            self._handle(frame, event, arg, fid)

    def _resumer(self, method: Any, starts: bool) -> None:
        """``method`` (a bound ``throw``, ``close``, ``athrow`` or ``aclose``) is about to
        resume a generator at its yield, and every generator it delegates to with ``yield
        from``: note which, and the generator object, on their recorder frames. Python 3.11
        does not pass the thrown exception to the profile function, and on every version
        only the generator tells whether it then yielded again at the yield it was thrown
        into (it is suspended) or the exception left it there. When the call returns
        (``starts`` False), the notes of generators it did not resume go (one down the
        chain handled the exception)."""
        kind = method.__name__
        if kind not in _RESUMERS or not starts and kind[0] == "a":
            return  # athrow() and aclose() return an awaitable: it resumes when awaited
        try:
            gen = method.__self__
            for _ in range(_MAX_DELEGATION):
                attrs = _RESUMABLE.get(type(gen))
                if attrs is None:
                    return
                rec = self._live.get(getattr(gen, attrs[0]))
                if rec is not None and len(rec) > _RESUMER:
                    rec[_RESUMER] = (_RESUMERS[kind], gen) if starts else None
                gen = getattr(gen, attrs[1])
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            recorder.S.agent_errors += 1

    def _handle(self, frame: Any, event: str, arg: Any, fid: int) -> None:
        """A call or return of recorded code (``fid``)."""
        code = frame.f_code
        live = self._live
        if event == "call":
            rec = live.get(frame)
            if rec is not None:  # a generator or coroutine being resumed
                resumer = rec[_RESUMER]
                rec[_RESUMER] = None
                if _op(code, frame.f_lasti) == _YIELD or (
                        resumer is not None and _exit_op(code, frame.f_lasti) == _YIELD):
                    # Resumed *at* the yield: close() or throw(). 3.12 passes the exception;
                    # on 3.11 the throw() or close() seen just before tells which it is (and
                    # on 3.13, where a resumption is always at the instruction after the
                    # yield, that it is one).
                    if isinstance(arg, BaseException):
                        thrown: Any = type(arg)
                    elif resumer is not None and resumer[0] is _THROW:
                        thrown = recorder.UnknownError
                    else:
                        thrown = GeneratorExit
                    rec[_THROWN] = (frame.f_lasti, thrown,
                                    resumer[1] if resumer is not None else None)
                recorder.resume(rec)
                return
            caller = recorder._get()
            if caller is not None and len(caller) > _THROWN and caller[_THROWN]:
                # The caller was thrown into and goes on (its callee handled the exception):
                # suspending again at that same await later is not an exit by the exception.
                # A close() is remembered (at no instruction): the GeneratorExit may still
                # leave it through a finally or a with block that makes this call.
                caller[_THROWN] = _CLOSING if caller[_THROWN][1] is GeneratorExit else None
            try:
                loc = frame.f_locals
                args = tuple(loc.get(p.lstrip("*")) for p in recorder.function_params(fid))
            except Exception as exc:
                if type(exc) is not RecursionError and program_exception(exc):
                    raise
                args = ()
            rec = recorder.open_call(fid, args)
            if rec is not None:
                if len(rec) <= _RESUMER:  # the C twin's frames have both slots already
                    rec.extend((None, None))  # _THROWN, _RESUMER
                live[frame] = rec
        elif event == "return":
            rec = live.get(frame)
            if rec is None:
                return
            flags = code.co_flags
            op = _exit_op(code, frame.f_lasti)
            thrown = rec[_THROWN]
            if op == _YIELD and flags & GENERATOR_FLAGS \
                    and not (thrown and thrown[0] == frame.f_lasti
                             and not _yielded_again(thrown[2], flags, arg)):
                rec[_THROWN] = None
                if flags & CO_ASYNC_GENERATOR:  # only wrapped values are real yields
                    if is_async_yield(arg):
                        note_yield(rec, unwrap_async_yield(arg), "AsyncIterator")
                        recorder.deactivate(rec)
                elif flags & CO_GENERATOR:  # (a coroutine's awaits keep it current)
                    note_yield(rec, arg, "Iterator")
                    recorder.deactivate(rec)
                return
            del live[frame]
            if recorder._get() is not rec:
                self._close_abandoned(rec)
            if thrown and thrown[0] == frame.f_lasti:
                recorder.close_call(rec, thrown[1])
            elif op in _RETURNS:
                rec[recorder.RV] = arg
                recorder.close_call(rec, None)
            elif thrown and thrown[1] is GeneratorExit:
                # closed, and the GeneratorExit left through a finally or a with block
                recorder.close_call(rec, GeneratorExit)
            else:
                recorder.close_call(rec, recorder.UnknownError)

    def _close_abandoned(self, rec: list[Any]) -> None:
        """``rec``'s frame returns while calls it made are still current: their return
        events never reached the recorder (at the recursion limit the callback itself cannot
        be called while the RecursionError unwinds the deepest frames). Close them as
        having raised, so the caller is current again; left open, every later call of the
        thread would nest under them. A suspended generator or coroutine in between (one
        driven by hand, which stays current across its awaits) is left as it is."""
        chain = []
        f = recorder._get()
        for _ in range(_MAX_ABANDONED):
            if f is rec:
                break
            if not recorder.is_frame(f):
                return
            chain.append(f)
            f = f[recorder.OUTER]
        else:
            return
        mine = {id(r): py for py, r in self._live.items()}
        for r in chain:
            py = mine.get(id(r))
            if py is not None and py.f_code.co_flags & GENERATOR_FLAGS:
                return
        for r in chain:
            py = mine.get(id(r))
            if py is not None:
                del self._live[py]
            recorder.close_call(r, recorder.UnknownError)

    def _recover(self, frame: Any, event: str, exc: BaseException) -> None:
        """An exception of the program's, raised asynchronously while the callback ran (a
        signal handler ran inside it), leaves the callback: the C trampoline calls this, then
        lets it propagate and keeps the callback. The exception ends the frame the event was
        about: close its record (one opened but not yet registered would stay current)."""
        if event == "return":
            rec = self._live.pop(frame, None)
            if rec is not None:
                recorder.close_call(rec, type(exc))
        elif event == "call":
            cur = recorder._get()
            if cur is not None and len(cur) >= _THROWN \
                    and cur[recorder.FID] == self._codes.get(frame.f_code):
                self._live.pop(frame, None)
                recorder.close_call(cur, type(exc))

_THROWN = recorder.CPU + 1  # extra slot on profile-backend frames
# Another: (_THROW or _CLOSE, the generator object) from the throw()/close() about to resume it.
_RESUMER = _THROWN + 1
_THROW, _CLOSE = "throw", "close"
_CLOSING = (-1, GeneratorExit, None)  # a _THROWN value: closed, and it has run since
_RESUMERS = {"throw": _THROW, "athrow": _THROW, "close": _CLOSE, "aclose": _CLOSE}
_BUILTIN_METHOD: type = type([].append)
# The resumable types: (attribute of its frame, attribute of what it delegates to)
_RESUMABLE: dict[type, tuple[str, str]] = {}


def _resumable_types() -> None:
    def gen() -> Any:
        yield

    async def coro() -> None:
        pass

    async def agen() -> Any:
        yield

    c = coro()
    _RESUMABLE.update({type(gen()): ("gi_frame", "gi_yieldfrom"),
                       type(c): ("cr_frame", "cr_await"),
                       type(agen()): ("ag_frame", "ag_await")})
    c.close()


_resumable_types()
# throw() into a `yield from` chain: generators passed through at most.
_MAX_DELEGATION = 1000


def _yielded_again(gen: Any, flags: int, arg: Any) -> bool:
    """A 'return' event at the yield a generator was thrown into: did it handle the
    exception and yield again there (True), or did the exception leave it (False)?"""
    if flags & CO_ASYNC_GENERATOR:
        return is_async_yield(arg)  # an exception leaving it carries no wrapped value
    if gen is None:
        return False  # closed by the collector (no close() call seen): it ends there
    suspended = getattr(gen, "gi_suspended", None)
    if suspended is None:
        suspended = getattr(gen, "cr_suspended", False)
    return bool(suspended)
# Abandoned calls closed at most at once: a recursion limit's depth, and some.
_MAX_ABANDONED = 100_000


_profile: ProfileBackend | None = None  # the installed profile backend, if it is that one


def displaced() -> tuple[int, int]:
    """(displacements, ns displaced) of the profile backend; (0, 0) for the others."""
    return _profile.displaced() if _profile is not None else (0, 0)


def choose_profile_core() -> tuple[Any, str]:
    """The C profile function (``_cores.ProfileCore``) when asked for with
    ``FLOWAGENT_PROFILE_CORE=c`` and the recorder runs its C twin, else None (the Python
    profile function behind the C trampoline); and why."""
    if os.environ.get("FLOWAGENT_PROFILE_CORE", "") != "c":
        # Not yet the default: under it a program recursing to its limit, and asyncio
        # timeouts landing in the handler, can leave a call open (later calls of the
        # session are not stored); the Python profile function passes those scenarios.
        return None, ("Python profile function behind the C trampoline (the C profile "
                      "function is opt-in: FLOWAGENT_PROFILE_CORE=c)")
    if not recorder.ACCELERATED:
        return None, "Python profile function (the recorder runs its Python twin)"
    try:
        from . import _cores
    except ImportError:
        return None, "Python profile function (the C cores are not built)"
    return _cores, "C profile function (_cores.ProfileCore), one check per unrecorded call"


def _profile_setter(on_error: Any) -> Any:
    """sys.setprofile removes a profile function when an exception leaves it, and one can:
    an exception the program raises asynchronously (a signal handler's) arriving while the
    callback runs must reach the program. The C accelerator's trampoline keeps the callback
    installed; without it, sys.setprofile is all there is."""
    try:
        from ._speedups import profile_on_error, setprofile
    except ImportError:
        return sys.setprofile
    profile_on_error(on_error)
    return setprofile


def _op(code: Any, lasti: int) -> int:
    try:
        co_code: bytes = code.co_code
        return co_code[lasti]
    except (IndexError, TypeError):
        return -1


def _exit_op(code: Any, lasti: int) -> int:
    """The instruction a frame left at (``return`` event), a 3.13 suspension read as
    YIELD_VALUE."""
    op = _op(code, lasti)
    if _YIELD_AT_RESUME and op == _RESUME and _op(code, lasti + 1) & 3:
        return _YIELD
    return op


def caveat(name: str) -> str | None:
    """What backend ``name`` cannot record right on this Python, or None. ``auto`` never
    picks such a backend; choosing it says this."""
    if name in ("profile", "monitor") and sys.version_info >= (3, 13):
        # CPython 3.13 closes a generator suspended at a yield outside try/except without
        # resuming it: no profile or sys.monitoring event tells that its call ended. And the
        # profile function cannot tell a resumption by the collector's close() from one by
        # next() (a throw() or close() call it sees just before).
        return (f"on Python 3.13 --backend {name} does not see a generator end when it is "
                f"closed early (close(), or a loop left) while suspended at a yield outside "
                f"try/except" + (", and takes one the collector closes at a yield inside "
                                 "try for a failure" if name == "profile" else "")
                + "; such calls stay open. The default backend (wrap) records them right")
    return None


def choose(requested: str) -> tuple[Backend, str]:
    """The single place that decides which backend records, and says why."""
    if requested == "profile":
        backend = ProfileBackend()
        return backend, f"requested with --backend profile ({backend.core})"
    if requested == "monitor":
        return _monitor_or_wrap()
    if requested == "wrap":
        return WrapBackend(), "requested with --backend wrap"
    return _auto()


def _auto() -> tuple[Backend, str]:
    """The cheapest core that keeps every recorded fact, by measurement
    (``benchmarks/cores_ab.py``, ``percall_ab.py``, ``run.py --real``; results/cores_ab-*.md,
    percall-3.12.md, requests.md).

    On Python 3.12 that is ``monitor``: its C ``sys.monitoring`` callbacks, enabled on the
    selected code objects only, add ~1,500 instructions per recorded call where ``wrap``'s
    rewritten ``with`` block adds ~1,950, cost less per web request and on real programs,
    and leave the program's bytecode as it is. On 3.13 ``monitor`` cannot see a generator
    closed early at a yield outside try/except (:func:`caveat`), so ``wrap`` records there,
    as on 3.11, which has no ``sys.monitoring``. Where every tool id ``monitor`` may use is
    taken (another tool monitors the program), ``wrap``. The ``profile`` core costs ~4x and
    cannot see which exception unwound a frame. Every backend stays available with
    ``--backend``.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.version_info[:2] == (3, 12):
        from .monitor import MonitorBackend, free_tool_id

        tool_id = free_tool_id()
        if tool_id is not None:
            backend = MonitorBackend(tool_id)
            return backend, (
                f"auto: monitor (sys.monitoring tool id {tool_id}; {backend.core}) records a "
                f"call for the least of the cores on Python {version}, without rewriting "
                f"bytecode. --backend wrap or profile overrides")
        other = "every sys.monitoring tool id monitor may use is taken"
    elif sys.version_info >= (3, 13):
        other = (f"on Python {version} monitor does not see a generator closed early at a "
                 f"yield outside try/except")
    else:
        other = f"Python {version} has no sys.monitoring"
    return WrapBackend(), (
        f"auto: wrap (import-time instrumentation) records a call for the least of the cores "
        f"that keep every fact here; {other}; profile cannot see exception types. "
        f"--backend monitor or profile overrides")


def _monitor_or_wrap() -> tuple[Backend, str]:
    if sys.version_info < (3, 12):
        return WrapBackend(), (
            f"--backend monitor needs sys.monitoring (Python 3.12+) and this is Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; using wrap (import-time "
            f"instrumentation) instead")
    from .monitor import CANDIDATE_TOOL_IDS, MonitorBackend, free_tool_id

    tool_id = free_tool_id()
    if tool_id is None:
        users = ", ".join(f"{i}: {sys.monitoring.get_tool(i)}" for i in CANDIDATE_TOOL_IDS)
        return WrapBackend(), (
            f"--backend monitor found every sys.monitoring tool id it may use taken ({users}); "
            f"using wrap (import-time instrumentation), which records imported modules but not "
            f"a main script started without the runmain shim. Stop the other tool to use "
            f"monitor")
    backend = MonitorBackend(tool_id)
    return backend, (f"requested with --backend monitor (sys.monitoring tool id {tool_id}; "
                     f"{backend.core})")
