"""The ``monitor`` backend: ``sys.monitoring`` (PEP 669, Python 3.12+).

Events, and why each:

* ``PY_START``, *global*: the only way to meet every code object once. The callback decides
  (:class:`codeinfo.CodeSelector`, once per code object); code that is not recorded gets
  ``DISABLE``, after which the interpreter never calls us for it again, so unselected code
  runs at full speed after its first call.
* ``PY_RETURN`` (and ``PY_YIELD`` + ``PY_RESUME`` for generators and async generators),
  *local*: switched on per selected code object with ``set_local_events``. Plain functions
  and coroutines need no yield events: a coroutine's awaits keep it the current call of its
  task, as under the other backends.
* ``PY_UNWIND`` and ``PY_THROW``, *global*: Python 3.12 and 3.13 refuse them as local events.
  They only fire when an exception leaves a frame or is thrown into a generator, and the
  callback returns at once for code it does not know. ``PY_UNWIND`` carries the exception,
  so unlike ``profile`` the recorded exception type is the real one.

Each recorded Python frame maps to its recorder frame in a dict while the call is open (a
generator's across its whole iteration), so recursion, threads (``sys.monitoring`` is
process-wide) and asyncio tasks (the recorder keeps the current call per context) need
nothing more. The tool id is :data:`sys.monitoring.PROFILER_ID` when free, else one of the
ids Python assigns to no tool; a registered tool is never displaced (:func:`free_tool_id`).

Two cores implement the callbacks with the same behaviour: the C one
(``_cores.MonitorCore``, the default where the extension is built) and the Python closures
below, which run where it is not built and with the recorder's Python twin
(``FLOWAGENT_PURE=1``). :func:`choose_core` is the one place that picks.
"""

from __future__ import annotations

import sys

from . import recorder
from .backendapi import Capabilities, HooksMixin
from .codeinfo import (CO_ASYNC_GENERATOR, CO_GENERATOR, CodeSelector, is_async_yield,
                       note_yield, unwrap_async_yield)
from .select import Selector
from .guard import program_exception

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any

TOOL_NAME = "flowagent"
# 3 and 4 first: CPython reserves them for no one. PROFILER_ID last: cProfile (3.12+) claims
# it when the program profiles itself, and would fail with "Another profiling tool is
# already active" if the recorder held it.
CANDIDATE_TOOL_IDS = (3, 4, 2)
_YIELDING = CO_GENERATOR | CO_ASYNC_GENERATOR  # yields are suspensions of the call


def free_tool_id() -> int | None:
    """The first candidate tool id no tool has claimed, or None."""
    for tool_id in CANDIDATE_TOOL_IDS:
        if sys.monitoring.get_tool(tool_id) is None:  # type: ignore[attr-defined]
            return tool_id
    return None


def choose_core() -> tuple[Any, str]:
    """The C callbacks (``_cores``) when the recorder runs its C twin, else None; and why."""
    if not recorder.ACCELERATED:
        return None, "Python callbacks (the recorder runs its Python twin)"
    try:
        from . import _cores
    except ImportError:
        return None, "Python callbacks (the C cores are not built)"
    if not hasattr(_cores, "MonitorCore"):
        return None, "Python callbacks (the C cores were built without sys.monitoring)"
    return _cores, "C callbacks (_cores.MonitorCore)"


class MonitorBackend(HooksMixin):
    name = "monitor"
    capabilities = Capabilities(exception_types=True, instruments_main=False)

    def __init__(self, tool_id: int) -> None:
        self._post_import = {}
        self.tool_id = tool_id
        self.cores, self.core = choose_core()
        # id(code) -> (fid, parameter names, co_flags, code) for every recorded code object.
        # By id, not by code: equal code objects (the same function in two files) are two
        # functions, and the info holds the code so the id stays its own.
        self._infos: dict[int, tuple[int, tuple[str, ...], int, Any]] = {}
        self._live: dict[Any, list[Any]] = {}  # python frame -> recorder frame, while open
        self._installed = False

    def install(self, selector: Selector, nested: bool) -> None:
        mon = sys.monitoring  # type: ignore[attr-defined]
        # Raises ValueError if another tool took the id since choose(): bootstrap reports it.
        mon.use_tool_id(self.tool_id, TOOL_NAME)
        self._installed = True
        ev = mon.events
        describe = CodeSelector(selector, nested).describe
        if self.cores is not None:
            callbacks = _c_callbacks(self.cores, self.tool_id, describe, self._infos,
                                     self._live)
        else:
            callbacks = _callbacks(self.tool_id, describe, self._infos, self._live)
        for event, callback in zip((ev.PY_START, ev.PY_RETURN, ev.PY_YIELD, ev.PY_RESUME,
                                    ev.PY_UNWIND, ev.PY_THROW), callbacks):
            mon.register_callback(self.tool_id, event, callback)
        mon.set_events(self.tool_id, ev.PY_START | ev.PY_UNWIND | ev.PY_THROW)
        self._install_hooks_only(nested, selector)

    def uninstall(self) -> None:
        self._uninstall_finder()
        if not self._installed:
            return
        self._installed = False
        mon = sys.monitoring  # type: ignore[attr-defined]
        mon.set_events(self.tool_id, 0)
        for info in list(self._infos.values()):
            mon.set_local_events(self.tool_id, info[3], 0)
        for event in (mon.events.PY_START, mon.events.PY_RETURN, mon.events.PY_YIELD,
                      mon.events.PY_RESUME, mon.events.PY_UNWIND, mon.events.PY_THROW):
            mon.register_callback(self.tool_id, event, None)
        mon.free_tool_id(self.tool_id)
        self._infos.clear()
        self._live.clear()


def _classifier(tool_id: int, describe: Any, infos: dict[Any, Any]) -> Any:
    """Decides once per code object: registers a recorded one, stores its info in ``infos``
    and switches its local events on; returns the info, or None for code not recorded."""
    mon = sys.monitoring  # type: ignore[attr-defined]
    ev = mon.events
    set_local_events = mon.set_local_events
    function_params = recorder.function_params

    def classify(code: Any, frame: Any) -> tuple[Any, ...] | None:
        fid = describe(code, frame.f_globals)
        if not fid:
            return None
        flags = code.co_flags
        info = (fid, tuple(p.lstrip("*") for p in function_params(fid)), flags, code)
        infos[id(code)] = info
        set_local_events(tool_id, code, ev.PY_RETURN | (
            ev.PY_YIELD | ev.PY_RESUME if flags & _YIELDING else 0))
        return info

    return classify


def _c_callbacks(cores: Any, tool_id: int, describe: Any, infos: dict[Any, Any],
                 live: dict[Any, Any]) -> tuple[Any, ...]:
    """The six event callbacks, as callables of one C core over the same recorder
    functions and dicts the Python callbacks use."""
    core = cores.MonitorCore(
        classify=_classifier(tool_id, describe, infos), infos=infos, live=live,
        open_call=recorder.open_call, close_call=recorder.close_call, resume=recorder.resume,
        deactivate=recorder.deactivate, note_yield=note_yield, is_async_yield=is_async_yield,
        unwrap_async_yield=unwrap_async_yield, state=recorder.S,
        disable=sys.monitoring.DISABLE, rv=recorder.RV)  # type: ignore[attr-defined]
    return (core.py_start, core.py_return, core.py_yield, core.py_resume, core.py_unwind,
            core.py_throw)


def _callbacks(tool_id: int, describe: Any, infos: dict[Any, Any],
               live: dict[Any, Any]) -> tuple[Any, ...]:
    """The six event callbacks, as closures over everything they use (no attribute lookups
    on the per-call path). Each swallows and counts its own errors: an exception escaping a
    monitoring callback would surface in the program."""
    DISABLE = sys.monitoring.DISABLE  # type: ignore[attr-defined]
    getframe = sys._getframe
    open_call, close_call, RV = recorder.open_call, recorder.close_call, recorder.RV
    resume, deactivate = recorder.resume, recorder.deactivate
    S = recorder.S
    classify = _classifier(tool_id, describe, infos)

    def py_start(code: Any, offset: int) -> Any:
        rec = frame = None
        try:
            frame = getframe(1)
            info = infos.get(id(code))
            if info is None:
                info = classify(code, frame)
                if info is None:
                    return DISABLE
            loc = frame.f_locals
            rec = open_call(info[0], tuple([loc.get(p) for p in info[1]]))
            if rec is not None:
                live[frame] = rec
        except BaseException as exc:
            if rec is not None:
                # The program's exception (a signal handler ran in this callback) ends the
                # call before it began; unregistered, its record would stay current.
                live.pop(frame, None)
                close_call(rec, type(exc))
            if not isinstance(exc, Exception) or (
                    type(exc) is not RecursionError and program_exception(exc)):
                raise
            S.agent_errors += 1
        return None

    def py_return(code: Any, offset: int, value: Any) -> None:
        try:
            rec = live.pop(getframe(1), None)
            if rec is not None:
                rec[RV] = value
                close_call(rec, None)
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1

    def py_unwind(code: Any, offset: int, exc: BaseException) -> None:
        if id(code) not in infos:
            return  # global event: most unwinding frames are not ours
        try:
            rec = live.pop(getframe(1), None)
            if rec is not None:
                close_call(rec, type(exc))
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1

    def py_yield(code: Any, offset: int, value: Any) -> None:
        try:
            rec = live.get(getframe(1))
            if rec is None:
                return
            if infos[id(code)][2] & CO_ASYNC_GENERATOR:
                if not is_async_yield(value):
                    return  # an await inside the async generator: still its call
                value = unwrap_async_yield(value)
                note_yield(rec, value, "AsyncIterator")
            else:
                note_yield(rec, value, "Iterator")
            deactivate(rec)  # whoever resumed it is the current call again
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1

    def resume_frame(frame: Any) -> None:
        """The generator running in ``frame`` is the current call again."""
        try:
            rec = live.get(frame)
            if rec is not None:
                resume(rec)
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1

    def py_resume(code: Any, offset: int) -> None:
        resume_frame(getframe(1))

    def py_throw(code: Any, offset: int, exc: BaseException) -> None:
        # throw() or close() resumes a suspended generator with an exception: it is the
        # current call again until it yields, returns or the exception unwinds it.
        info = infos.get(id(code))
        if info is not None and info[2] & _YIELDING:
            resume_frame(getframe(1))

    return py_start, py_return, py_yield, py_resume, py_unwind, py_throw
