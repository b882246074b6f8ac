"""The per-call hot path: call frames, sessions, interning and the outgoing buffer.

Every backend feeds the same primitives: :func:`open_call` (``fid, args``) → a *frame* (a
small list, or the C twin's ``Call`` indexed alike: see the layout below) or None when not
recording; :func:`close_call` (frame, exception type or None)
when it ends, however it ends; :func:`suspend` / :func:`resume` around each ``yield`` of a
generator. Instrumented code reaches them through ``with`` helpers (:func:`call`,
:func:`gen_call`, :func:`ret`) that need no local variable in the user's function.

The current call lives in a :class:`contextvars.ContextVar`, not in a thread-local stack:
each thread and each asyncio task has its own context, so calls of concurrent sessions never
mix, and a task created inside a session inherits the creating call as its parent (the task
copies the context), which is what puts child tasks in their parent's session. The C twin
keeps a small holder in its variable and writes the current frame into it in place while no
other context can reach the holder, which spares a ``ContextVar.set`` per call (the holder a
copied context shares is replaced, never written; ``_speedups.c`` proves the case from
CPython's own structures). Everything here and in the backends and integrations reads and
writes the current call through ``_get`` / ``_set`` only, which understand the holder.

A finished call becomes one record of 13 integers (:data:`flowagent.protocol.wire.CALL_FIELDS`)
packed into a flat int64 buffer, so nothing built for it outlives the call; a flusher thread
takes the buffer (:func:`take_calls`), encodes batches and writes them into this process's
ring, so msgpack and zstd never run on the program's own call path.

Two twins implement the hot path (``open_call``, ``close_call``, ``call``, ``ret``, the
context managers, the buffer) with the same Python-visible behaviour: the C accelerator
``_speedups`` and the pure-Python code below. :func:`_choose_hot_path` is the one place that
picks; ``FLOWAGENT_PURE=1`` forces the Python twin. :data:`ACCELERATED` and :data:`HOT_PATH`
say which runs and why. Both call back into this module for everything rare (a session's
first call, describing a shape, naming an exception), so that policy exists once.

The shape budget: every call is recorded, but describing argument and return values costs
more than the rest of a record, so the first :data:`SHAPE_FIRST` calls of each function are
shaped, then one in :data:`SHAPE_EVERY` up to :data:`SHAPE_WARM` calls, then one in
:data:`SHAPE_HOT_EVERY`. The other calls carry shape id 0 ("not sampled"). Variants and drift
are still found, at most SHAPE_EVERY (a hot function: SHAPE_HOT_EVERY) calls late.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import sys
import threading
import time
from contextvars import ContextVar
from types import TracebackType

from . import pending as _pending
from . import shapes as _shapes
from .guard import program_exception
from ..protocol.env import is_true
from ..protocol.wire import ERROR, N_FIELDS, PARTIAL, SUCCESS, columns
from ..protocol.wire import THR as _THR_FIELD

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeGuard

# Frame layout. The pure twin's frame is a list, the cheapest mutable record Python code has;
# the C twin's is its own type (``_speedups.Call``) indexed the same way. Code here, in the
# backends and in the integrations only indexes frames and tells them apart with is_frame().
CID, PARENT, SES, FID, T0, INS, FLAGS, OUTER, GEN, THR, EXC, YIELDED, RV, CPU = range(14)
FRAME_TYPES: tuple[type, ...] = (list,)


def is_frame(f: Any) -> TypeGuard[list[Any]]:
    """Is ``f`` a frame of either twin (and not None, a sampled-out marker or anything else
    that a context's current call or a frame's OUTER may hold)?"""
    return isinstance(f, FRAME_TYPES)
_ERR = 1          # this call raised
_CHILD_ERR = 2    # something below it raised (makes a normal return `partial`)
_SKIP = 4         # a session left out by sampling: nothing under it is recorded
_SHAPED = 8       # this call's shapes are taken (see the shape budget)

_cur: ContextVar[list[Any] | None] = ContextVar("flowagent_current_call", default=None)
_get = _cur.get
_var_set = _cur.set
_gc_isenabled, _gc_disable, _gc_enable = gc.isenabled, gc.disable, gc.enable


def _set(frame: list[Any] | None) -> None:
    """Make ``frame`` current, with the garbage collector held off meanwhile: a collection
    inside ``ContextVar.set`` runs finalizers (a recorded ``__del__``, a weakref callback)
    that would set the variable again while CPython is in the middle of setting it, which
    reads the context's mapping after it was freed (a wrong current call, or a crash)."""
    if _gc_isenabled():
        _gc_disable()
        try:
            _var_set(frame)
        finally:
            _gc_enable()
    else:
        _var_set(frame)
_clock = time.perf_counter_ns
_ident = threading.get_ident
_active_threads = threading._active  # type: ignore[attr-defined]  # ident -> Thread (what current_thread() reads)
_object_getattr = object.__getattribute__
_random = random.random
_thread_time = time.thread_time_ns
_shape_of = _shapes.shape_of


# Names of threads that began inside a session (no session start of their own carries their
# name), kept until the flusher sends them: a short-lived thread is gone by then.
thread_names: dict[int, str] = {}


def _thread_name(ident: int) -> str:
    """The thread's name from its instance dict: a subclass's `name` property is user code."""
    try:
        t = _active_threads.get(ident)
        if t is None:
            return f"Thread-{ident}"
        name = _object_getattr(t, "__dict__").get("_name")
        return name if type(name) is str else f"Thread-{ident}"
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        return f"Thread-{ident}"


class _State:
    """Process-wide recorder state; the C twin's ``_speedups.State`` has the same attributes."""

    def __init__(self) -> None:
        self.on = False            # master switch: enter() returns None when False
        self.gen = object()        # identity changes at fork: frames of the parent go stale
        self.next_id = itertools.count(1).__next__
        self.max_buf = 1 << 18     # records held before the recorder drops (bounded memory)
        self.buf = _pending.new_buffer(self.max_buf)  # finished calls, see pending.py
        self.flush_at = 1 << 13    # records that wake the flusher early
        self.dropped = 0           # records dropped because the buffer was full
        self.agent_errors = 0      # exceptions inside the agent, swallowed and counted
        self.session_starts: list[tuple[Any, ...]] = []  # (ses, fid, t0, thread ident, thread name)
        self.wake: Callable[[], None] = lambda: None
        # Processes that may be killed right after a session (multiprocessing pool workers,
        # which Pool.terminate() SIGTERMs) flush each finished session synchronously.
        self.sync_sessions = False
        self.flush_now: Callable[[], None] = lambda: None
        self.sample_ppm = 1_000_000  # sessions recorded per million (live-controlled)
        self.user_functions = False  # any function of the program instrumented yet?
        self.cpu = False  # measure CPU time per call (config cpu_time)
        self.sampled_out = 0


S: Any = _State()
_taker = _pending.Taker(S.max_buf)  # the flusher's side of the pure twin's buffer
_pack, _PackError, _REC_BYTES = _pending.pack, _pending.PackError, _pending.REC_BYTES

# ---------------------------------------------------------------------------------------
# Interning. Ids are per process; a batch carries the definitions it has not sent yet.

_functions: list[tuple[Any, ...]] = [()]          # fid -> (module, qualname, file, line, params, kind)
_fn_index: dict[tuple[str, str, str, int], int] = {}
_strings: list[Any] = [None]            # sid -> shape string, input tuple or type name
_str_index: dict[Any, int] = {None: 0}
_sent_functions = 1
_sent_strings = 1
# Re-entrant: code the program runs inside agent code (a finalizer of the collection an
# allocation here triggered, a gc callback, a signal handler) may record a call and intern
# its shapes in the same thread. Both holders keep the tables consistent: an id is taken and
# stored in one step, so a nested one gets the next id (at worst a value gets two ids).
_intern_lock = threading.RLock()


def in_critical_section() -> bool:
    """Does this thread hold one of the recorder's locks? Then the code running now was
    entered from inside agent code, and must not wait for anything that may be waiting for
    that lock (a synchronous flush waits for the flusher, which may wait for it)."""
    owned: bool = _intern_lock._is_owned() or _drop_lock._is_owned()  # type: ignore[attr-defined]
    return owned


def register_function(module: str, qualname: str, filename: str, line: int,
                      params: tuple[str, ...], kind: str) -> int:
    """Give a function a small integer id (stable for the life of this process)."""
    key = (module, qualname, filename, line)
    fid = _fn_index.get(key)
    if fid is None:
        with _intern_lock:
            fid = _fn_index.get(key)
            if fid is None:
                fid = len(_functions)
                _functions.append((module, qualname, filename, line, params, kind))
                _fn_index[key] = fid
                if kind != "request":
                    S.user_functions = True
    return fid


def function_params(fid: int) -> tuple[str, ...]:
    params: tuple[str, ...] = _functions[fid][4]
    return params


def intern(value: Any) -> int:
    """Id of a shape string / input-shape tuple / exception type name."""
    sid = _str_index.get(value)
    if sid is None:
        with _intern_lock:
            sid = _str_index.get(value)
            if sid is None:
                sid = len(_strings)
                _strings.append(value)
                _str_index[value] = sid
    return sid


def take_definitions() -> tuple[list[Any], list[Any]]:
    """New function and string definitions since the last call (for the next batch)."""
    global _sent_functions, _sent_strings
    with _intern_lock:
        nf, ns = len(_functions), len(_strings)
        fns = [[i, *_functions[i][:4], list(_functions[i][4]), _functions[i][5]]
               for i in range(_sent_functions, nf)]
        strs = [[i, list(v) if isinstance(v, tuple) else v] for i, v in enumerate(
            _strings[_sent_strings:ns], _sent_strings)]
        _sent_functions, _sent_strings = nf, ns
    return fns, strs


def _resend_all_definitions() -> None:
    """A fresh ring (forked child) knows no ids yet."""
    global _sent_functions, _sent_strings
    _sent_functions = _sent_strings = 1


# ---------------------------------------------------------------------------------------
# Shapes, and the other rare paths both twins call. Scalars are cached by their type tuple:
# that is exact, since a scalar's shape is its type. Anything with structure is described
# afresh (shapes.shape_of is bounded).

_SCALARS = (int, str, float, bool, type(None), bytes, complex)
_SCALAR_IDS = frozenset(map(id, _SCALARS))
_scalar_inputs: dict[tuple[Any, ...], int] = {}
_scalar_outputs: dict[int, int] = {}  # id(type) -> shape id, builtin scalar types only

# The shape budget (see the module docstring).
SHAPE_FIRST = 16
SHAPE_EVERY = 16
SHAPE_WARM = 1024
SHAPE_HOT_EVERY = 256
_shape_calls: list[int] = []


def _shaped(fid: int) -> bool:
    try:
        n = _shape_calls[fid] + 1
    except IndexError:
        _shape_calls.extend([0] * (fid + 1 - len(_shape_calls)))
        n = 1
    _shape_calls[fid] = n
    if n <= SHAPE_FIRST:
        return True
    return n % (SHAPE_EVERY if n <= SHAPE_WARM else SHAPE_HOT_EVERY) == 0


def _input_sid(args: tuple[Any, ...]) -> int:
    # Keyed by the types' ids: hashing a class could run its metaclass's __hash__ (user code).
    types = tuple(map(id, map(type, args)))
    sid = _scalar_inputs.get(types)
    if sid is not None:
        return sid
    shape = tuple(map(_shape_of, args))
    sid = intern(shape)
    if _SCALAR_IDS.issuperset(types):
        _scalar_inputs[types] = sid
    return sid


def _output_sid(value: Any) -> int:
    sid = intern(_shape_of(value))
    if id(type(value)) in _SCALAR_IDS:
        _scalar_outputs[id(type(value))] = sid
    return sid


_type_dict = type.__dict__["__dict__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__


def _exc_name(tp: type) -> str:
    """``module.Qualname`` read through type's own C getters, never the metaclass."""
    try:
        qn = _type_qualname(tp)
        mod = _type_dict(tp).get("__module__", "builtins")
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        return "?"
    if type(mod) is not str:
        mod = "?"
    return qn if mod == "builtins" else f"{mod}.{qn}"


class UnknownError(Exception):
    """Stands for an exception whose type a backend cannot see (recorded as ``?``)."""




def _exc_sid(exc_type: type) -> int:
    return intern("?" if exc_type is UnknownError else _exc_name(exc_type))


def _yield_sid(y: Any) -> int:
    """A generator's yielded shapes, or a fixed shape set by set_output_shape()."""
    return intern(y if type(y) is str else f"{y[0]}[{_union(y[1])}]")


def _union(shapes: list[str]) -> str:
    return "|".join(sorted(set(shapes)))


def _lineage_started(ses: int) -> None:
    from . import lineage  # imports this module: bound on first use

    global _lineage_started
    _lineage_started = lineage.started
    lineage.started(ses)


def _session_start(cid: int, fid: int, thread: int) -> None:
    # The thread's name now: a short-lived thread may be gone (and its ident reused) before
    # the flusher could look it up.
    S.session_starts.append((cid, fid, _clock(), thread, _thread_name(thread)))
    _lineage_started(cid)  # a session of a child process or pool task: under its parent call


# ---------------------------------------------------------------------------------------
# The pure-Python twin of the hot path (replaced by the C accelerator when it is chosen).
# Backends and integrations use open_call/close_call on frame lists; instrumented code uses
# the `with` helpers below, which need no local variable.

def open_call(fid: int, args: tuple[Any, ...]) -> list[Any] | None:
    """Start a call of function ``fid`` with argument values ``args`` (only shapes are kept).

    Returns the new frame (now current in this context), or None when not recording."""
    if not S.on:
        return None
    current = _get()
    frame = None
    try:
        parent = current
        if parent is None or parent[GEN] is not S.gen:
            if S.sample_ppm < 1_000_000 and _random() * 1_000_000 >= S.sample_ppm:
                return _skip_session(fid, current)
            parent = None
            cid = S.next_id()
            ses = cid
        elif parent[FLAGS] & _SKIP:
            return None
        else:
            cid = S.next_id()
            ses = parent[SES]
        if _shaped(fid):
            frame = [cid, parent, ses, fid, 0, _input_sid(args), _SHAPED, parent, S.gen,
                     _ident(), 0, 0, None, 0]
        else:
            frame = [cid, parent, ses, fid, 0, 0, 0, parent, S.gen, _ident(), 0, 0, None, 0]
        _set(frame)
        if ses == cid:
            _session_start(cid, fid, frame[THR])
        if S.cpu:
            frame[CPU] = _thread_time()
        frame[T0] = _clock()
        return frame
    except Exception as exc:
        if frame is not None and _get() is frame:
            _set(current)  # never leave a half-opened frame current: nobody would close it
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        S.agent_errors += 1
        return None


def _skip_session(fid: int, current: list[Any] | None) -> list[Any]:
    """A session left out by sampling: a frame that only keeps its calls from recording."""
    S.sampled_out += 1
    frame = [0, None, 0, fid, 0, 0, _SKIP, current, S.gen, 0, 0, 0, None, 0]
    _set(frame)
    return frame


def close_call(frame: list[Any], exc_type: type | None) -> None:
    """End a call: restore the caller as current and buffer the call record.

    ``exc_type`` is the exception the call raised, or None; the return value is in
    ``frame[RV]`` (set by :func:`ret`), the yielded shapes in ``frame[YIELDED]``."""
    t1 = _clock()
    try:
        cpu = _thread_time() - frame[CPU] if frame[CPU] else 0
        if _get() is frame:
            _set(frame[OUTER])
        flags = frame[FLAGS]
        if frame[GEN] is not S.gen or flags & _SKIP:
            return  # open when this process forked (the parent records it), or sampled out
        if exc_type is not None and exc_type is not GeneratorExit:
            # A consumer closing a generator early (GeneratorExit) is not a failure.
            res = ERROR
            # A fixed output shape (a request root's HTTP status) holds when it failed too.
            y = frame[YIELDED]
            out = _yield_sid(y) if type(y) is str else 0
            exc = _exc_sid(exc_type)
        else:
            exc = 0
            res = PARTIAL if flags & _CHILD_ERR else SUCCESS
            y = frame[YIELDED]
            if y:
                out = _yield_sid(y)
            elif flags & _SHAPED:
                v = frame[RV]
                out = _scalar_outputs.get(id(type(v))) or _output_sid(v)
            else:
                out = 0
        frame[RV] = None
        parent = frame[PARENT]
        if res and parent is not None:
            parent[FLAGS] |= _CHILD_ERR
        try:
            rec = _pack(frame[CID], parent[CID] if parent else 0, frame[SES], frame[FID],
                        parent[FID] if parent else 0, frame[INS], out, res, exc,
                        frame[T0], t1, frame[THR], cpu)
        except _PackError:  # a value out of int64 range: the agent's failure, not the program's
            raise OverflowError("call record out of range") from None
        try:
            # One C call appends the whole record (see pending.py): the flusher never sees
            # half of one. It raises ValueError when the buffer is full.
            S.buf.write(rec)
        except ValueError as full:
            if program_exception(full):
                raise
            if not _pending.append_when_full(S, rec):
                _drop()
        if parent is None and S.sync_sessions:
            S.flush_now()
        elif S.buf.tell() == S.flush_at * _REC_BYTES:
            # Once per buffer: waking the flusher at every session end would make one small,
            # badly compressed batch per web request; otherwise it runs on its interval.
            S.wake()
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        S.agent_errors += 1


_drop_lock = threading.RLock()  # re-entrant, as _intern_lock


def _drop() -> None:
    """The flusher cannot keep up (or is starved of the GIL): keep memory bounded, count it.

    Only the flusher ever removes records from the buffer; the program thread drops by not
    appending, so no record can be both sent and counted as dropped."""
    with _drop_lock:
        S.dropped += 1


def take_calls(limit: int = 0) -> tuple[int, bytes, set[int]]:
    """(count, wire call block, thread idents) of the oldest ``limit`` calls buffered (0: all
    of them), removed from the buffer; fewer than ``limit`` only when nothing is left.

    Called by the flusher (under its lock). Appends made meanwhile are kept for the next
    call (see pending.py)."""
    flat = _taker.take(S, limit)
    return len(flat) // N_FIELDS, columns(flat), set(flat[_THR_FIELD::N_FIELDS])


# What instrumented code calls (see instrument.py). A plain function or coroutine becomes
#
#     with __fa_call__(fid, a, b):
#         ... return __fa_ret__(fid, x) ...
#
# The context manager is a per-function singleton: at exit, the call's frame is the current
# one in this context (everything it called has already restored it), so no local variable
# is needed and locals(), co_varnames and f_locals stay the program's own. A generator can be
# closed from outside while suspended, when the current frame is someone else's, so a
# generator's context manager is its frame itself (:class:`Frame`).

class _Exit:
    __slots__ = ("fid",)
    # BEFORE_WITH calls __enter__; any C method that takes only self does, and costs least.
    __enter__ = object.__sizeof__

    def __init__(self, fid: int) -> None:
        self.fid = fid

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        try:
            f = _get()
            if f is not None and f[FID] == self.fid:
                close_call(f, et)
            elif f is not None:
                _close_abandoned(f, self.fid, et)
        except RecursionError:  # no frame to spare at the program's limit: not recorded
            S.agent_errors += 1


_MAX_ABANDONED = 64


def _close_abandoned(top: list[Any], fid: int, et: Any) -> None:
    """An exception the program raised asynchronously (a signal handler's, another thread's
    ``PyThreadState_SetAsyncExc``) arrived between a callee's ``__fa_call__`` and the start of
    its ``with`` block, which then never closed: close such frames above the call of ``fid``
    ending now, as having raised what is propagating (or an unknown exception), then it."""
    f: list[Any] | None = top
    mine = top[OUTER]
    for _ in range(_MAX_ABANDONED):
        if not is_frame(mine):
            return
        if mine[FID] == fid:
            break
        mine = mine[OUTER]
    else:
        return
    while f is not None and f is not mine:
        close_call(f, et if et is not None else UnknownError)
        f = _get()
    if f is mine:
        close_call(f, et)


class _NoExit:
    """Returned when a call is not recorded (paused, sampled out, agent trouble)."""

    __slots__ = ()
    __enter__ = object.__sizeof__

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        return None


_NOEXIT = _NoExit()
_exits: list[_Exit] = []


def _exit_for(fid: int) -> _Exit:
    while len(_exits) <= fid:
        _exits.append(_Exit(len(_exits)))
    return _exits[fid]


def call(fid: int, *args: Any) -> Any:
    """``with __fa_call__(fid, *args):`` around a plain function's or coroutine's body."""
    try:
        if open_call(fid, args) is None:
            return _NOEXIT
    except RecursionError:  # the program is at its limit: it meets it in its own code
        S.agent_errors += 1
        return _NOEXIT
    try:
        return _exits[fid]
    except IndexError:
        return _exit_for(fid)


def ret(fid: int, value: Any) -> Any:
    """``return __fa_ret__(fid, value)``: keep the return value for the output shape (only
    a shaped call's is read)."""
    f = _get()
    if f is not None and f[FID] == fid and f[FLAGS] & _SHAPED:
        f[RV] = value
    return value


# ---------------------------------------------------------------------------------------
# Choosing the twin.

_ACCELERATOR_ABI = 4  # _speedups.ABI this module is written against


def _configure(accelerator: Any) -> None:
    """Hand the C twin its slow-path hooks and the shape budget."""
    accelerator.configure(input_sid=_input_sid, output_sid=_output_sid, exc_sid=_exc_sid,
                          yield_sid=_yield_sid, session_start=_session_start, random=_random,
                          thread_time=_thread_time, shape_first=SHAPE_FIRST,
                          shape_every=SHAPE_EVERY, shape_warm=SHAPE_WARM,
                          shape_hot_every=SHAPE_HOT_EVERY, program_exception=program_exception,
                          unknown_error=UnknownError)


def shape_every_call() -> None:
    """Describe the shapes of every call, not the budgeted sample (config
    ``shape_every_call``): for catching a rare shape, at the cost of describing every value."""
    global SHAPE_FIRST
    SHAPE_FIRST = 1 << 62
    if _speedups is not None:
        _configure(_speedups)


def _choose_hot_path() -> tuple[Any, str]:
    """The single place that picks the hot path: (the C module or None, why)."""
    if is_true(os.environ.get("FLOWAGENT_PURE")):
        return None, "pure Python (FLOWAGENT_PURE is set)"
    try:
        from . import _speedups
    except ImportError as exc:
        return None, ("pure Python: the C accelerator is not built (no C compiler when "
                      f"flowagent was installed?): {exc}")
    if getattr(_speedups, "ABI", None) != _ACCELERATOR_ABI \
            or _speedups.FRAME_LAYOUT != tuple(range(CPU + 1)) \
            or _speedups.FLAG_BITS != (_ERR, _CHILD_ERR, _SKIP, _SHAPED):
        return None, ("pure Python: the C accelerator is out of date; reinstall flowagent "
                      "(pip install -e .) to rebuild it")
    _configure(_speedups)
    return _speedups, ("C accelerator (flowagent.agent._speedups); the current call is "
                       + ("written " if _speedups.IN_PLACE else "always a ContextVar.set: ")
                       + _speedups.IN_PLACE_WHY)


_speedups, HOT_PATH = _choose_hot_path()
ACCELERATED = _speedups is not None
if _speedups is not None:
    S = _speedups.S
    _get, _set = _speedups.current, _speedups.set_current
    open_call, close_call = _speedups.open_call, _speedups.close_call  # noqa: F811
    call, ret, take_calls = _speedups.call, _speedups.ret, _speedups.take_calls  # noqa: F811
    FRAME_TYPES = (list, _speedups.Call)


# ---------------------------------------------------------------------------------------
# Generators (Python in both twins: they work on the frames either twin creates).

class Frame(list):  # type: ignore[type-arg]
    """A generator's frame, which is also its context manager."""

    __slots__ = ()
    __enter__ = list.__len__

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        _generators.pop(id(_getframe(1)), None)
        close_call(self, et)


# The recorder frame of each running or suspended instrumented generator, by the id of its
# Python frame (which lives as long as the generator): an exception thrown into a suspended
# generator reaches its code with nothing else in hand (see reenter). Frames are not
# weak-referenceable; the entry goes when the generator's call closes.
_generators: dict[int, "Frame"] = {}
_getframe = sys._getframe


def gen_call(fid: int, *args: Any) -> Any:
    """``with __fa_gcall__(fid, *args):`` around a generator's body (spans its iteration)."""
    frame = open_call(fid, args)
    if frame is None:
        return _NOEXIT
    frame = Frame(frame)  # a sampled-out session's frame too: closing it restores the context
    _set(frame)
    _generators[id(_getframe(1))] = frame
    return frame


def reenter(fid: int) -> None:
    """``except: __fa_reenter__(fid); raise`` around a statement holding a ``yield``: an
    exception passes through the generator's code, which may have been thrown into it while
    suspended (``throw()``, ``close()``, ``athrow()``): it runs again, under whoever threw."""
    try:
        frame = _generators.get(id(_getframe(1)))
        if frame is None or frame[FID] != fid:
            return
        cur = f = _get()
        for _ in range(_MAX_ABANDONED):
            if f is frame:
                # It was running: calls it made that the exception left open (a lambda's
                # body raised) end as having raised it, and it is current again.
                et = sys.exc_info()[0] or UnknownError
                while cur is not None and cur is not frame:
                    close_call(cur, et)
                    cur = _get()
                return
            if not is_frame(f):
                break
            f = f[OUTER]
        resume(frame)
    except RecursionError:  # the program is at its limit: its own exception goes on
        S.agent_errors += 1


def own(fid: int) -> list[Any] | None:
    """The current frame if it is a call of ``fid`` (evaluated before a ``yield``)."""
    f = _get()
    return f if f is not None and f[FID] == fid else None


def _note_yield(frame: list[Any], value: Any, kind: str) -> None:
    y = frame[YIELDED]
    if not y:
        y = frame[YIELDED] = (kind, [])
    if len(y[1]) < _YIELD_SAMPLES:
        y[1].append(_shape_of(value))


_YIELD_SAMPLES = 4


def suspend(fid: int, value: Any = None, kind: str = "Iterator") -> Any:
    """Around ``yield value``: the consumer becomes current again while we are suspended."""
    f = _get()
    if f is not None and f[FID] == fid:
        try:
            _note_yield(f, value, kind)
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1
        _set(f[OUTER])
    return value


def asuspend(fid: int, value: Any = None) -> Any:
    return suspend(fid, value, "AsyncIterator")


def deactivate(frame: list[Any]) -> None:
    """The frame's generator is suspended: whoever resumed it is current again."""
    if _get() is frame:
        _set(frame[OUTER])


def resume(frame: list[Any] | None, sent: Any = None) -> Any:
    """After ``yield`` returns: we are current again, under whoever resumed us."""
    if frame is not None:
        cur = _get()
        if cur is not frame:
            frame[OUTER] = cur
            _set(frame)
    return sent


class Delegate:
    """``yield from it`` inside an instrumented generator: each step runs with the generator
    current (so calls made by ``it`` nest under it) and hands control back to the consumer
    with the consumer current. Delegated values count as the generator's yields.

    What ``it`` raises reaches the program with the traceback ``yield from`` gives it
    without the agent: this class's own frames are taken out of it (see _hide)."""

    __slots__ = ("_frame", "_it")

    def __init__(self, fid: int, iterable: Any) -> None:
        frame = own(fid)
        self._frame = frame
        try:
            self._it = iter(iterable)
        except BaseException as exc:
            _hide(exc)
            raise
        if frame is not None:
            _set(frame[OUTER])

    def __iter__(self) -> "Delegate":
        return self

    def _step(self, fn: Callable[..., Any], *a: Any) -> Any:
        frame = self._frame
        if frame is None:
            return fn(*a)
        resume(frame)
        try:
            value = fn(*a)
        finally:
            if _get() is frame:
                _set(frame[OUTER])
        try:
            _note_yield(frame, value, "Iterator")
        except Exception as exc:
            if type(exc) is not RecursionError and program_exception(exc):
                raise
            S.agent_errors += 1
        return value

    def __next__(self) -> Any:
        try:
            return self._step(next, self._it)
        except StopIteration:
            raise
        except BaseException as exc:
            _hide(exc)
            raise

    def send(self, value: Any) -> Any:
        try:
            if value is None:
                return self._step(next, self._it)
            return self._step(self._it.send, value)
        except StopIteration:
            raise
        except BaseException as exc:
            _hide(exc)
            raise

    def throw(self, *exc: Any) -> Any:
        try:
            thrower = getattr(self._it, "throw", None)
            if thrower is None:
                raise _thrown(*exc)  # as CPython does: raised at the `yield from`
            return self._step(thrower, *exc)
        except StopIteration:
            raise
        except BaseException as error:
            _hide(error)
            raise

    def close(self) -> None:
        try:
            closer = getattr(self._it, "close", None)
            if closer is not None:
                closer()
        except BaseException as exc:
            _hide(exc)
            raise


def _thrown(typ: Any, val: Any = None, tb: Any = None) -> BaseException:
    """The exception ``throw(typ[, val[, tb]])`` raises (for an iterator without throw())."""
    error: BaseException
    if isinstance(typ, type):
        error = val if isinstance(val, typ) else typ() if val is None else typ(val)  # type: ignore[assignment]
    else:
        error = typ
    return error.with_traceback(tb) if tb is not None else error


_DELEGATE_CODES = frozenset(f.__code__ for f in (
    Delegate.__init__, Delegate._step, Delegate.__next__, Delegate.send, Delegate.throw,
    Delegate.close))


def _hide(exc: BaseException) -> None:
    """Take Delegate's frames out of ``exc``'s traceback (before a bare ``raise``, which adds
    none): the caller's frames are added as it propagates, the iterator's stay."""
    tb = exc.__traceback__
    kept = []
    while tb is not None:
        if tb.tb_frame.f_code not in _DELEGATE_CODES:
            kept.append(tb)
        tb = tb.tb_next
    new = None
    for t in reversed(kept):
        new = TracebackType(new, t.tb_frame, t.tb_lasti, t.tb_lineno)
    exc.__traceback__ = new


# ---------------------------------------------------------------------------------------
# Lambdas (their body is one expression: see instrument.Instrumenter._lambdas).

def lambda_call(fid: int, *args: Any) -> list[Any] | None:
    """``__fa_lcall__(fid, *args)``: open a lambda's call; its frame, or None."""
    try:
        return open_call(fid, args)
    except RecursionError:  # the program is at its limit: it meets it in its own code
        S.agent_errors += 1
        return None


def lambda_return(frame: list[Any] | None, value: Any) -> Any:
    """``__fa_lret__(frame, value)``: close the lambda's call with its body's value."""
    if frame is not None:
        try:
            frame[RV] = value
            below = _get()
            if below is frame:
                close_call(frame, None)
            elif below is not None:  # a call below it that raised was left open
                _close_abandoned(below, frame[FID], None)
        except RecursionError:
            S.agent_errors += 1
    return value


# ---------------------------------------------------------------------------------------
# Synthetic session roots (one per web request).

def enter_root(name: str, module: str = "<request>", always: bool = False,
               announce: bool = True, fid: int = 0) -> list[Any] | None:
    """Open a synthetic session root (one web request) that the request's calls nest under.

    It always starts a *new* session, even when the request is served from inside another
    recorded call (a test client driven by a recorded script): one request, one session.
    ``always``: open it even before any function of the program is instrumented (a web
    framework may import the program's views during its first request). ``announce=False``:
    no session-start event (a root that may end up recording nothing, see :func:`discard`).
    ``fid``: the root's function id, as :func:`register_function` gave it for ``module`` and
    ``name`` (a caller that keeps it spares a request the registration); 0: register it now.
    """
    if not S.on or not (S.user_functions or always):
        return None  # nothing of the program is instrumented: a request root alone says nothing
    try:
        if not fid:
            fid = register_function(module, name, "", 0, (), "request")
        if S.sample_ppm < 1_000_000 and _random() * 1_000_000 >= S.sample_ppm:
            return _skip_session(fid, _get())
        cid = S.next_id()
        frame = [cid, None, cid, fid, 0, 0, 0, _get(), S.gen, _ident(), 0, 0, None, 0]
        _set(frame)
        if announce:
            _session_start(cid, fid, frame[THR])
        frame[T0] = _clock()
        return frame
    except Exception as exc:
        if type(exc) is not RecursionError and program_exception(exc):
            raise
        S.agent_errors += 1
        return None


def discard(frame: list[Any]) -> None:
    """Close a synthetic root opened with ``announce=False`` without recording it."""
    frame[FLAGS] |= _SKIP
    close_call(frame, None)


def set_output_shape(frame: list[Any] | None, shape: str) -> None:
    """Fix the output shape of a synthetic call (a request root records its HTTP status)."""
    if frame is not None:
        frame[YIELDED] = shape


def reset_after_fork() -> None:
    """In a forked child: fresh buffer and ids; frames inherited from the parent go stale."""
    global _intern_lock, _drop_lock, _taker
    # The flusher may have held them when the program forked; it does not exist here.
    _intern_lock = threading.RLock()
    _drop_lock = threading.RLock()
    S.gen = object()
    S.dropped = 0
    S.agent_errors = 0
    S.sampled_out = 0
    S.session_starts = []
    if _speedups is not None:
        _speedups.reset()
    else:
        S.buf = _pending.new_buffer(S.max_buf)
        _taker = _pending.Taker(S.max_buf)
    _scalar_inputs.clear()
    _scalar_outputs.clear()
    _resend_all_definitions()
    _set(None)


def unsend_definitions(fns: list[Any], strs: list[Any]) -> None:
    """A batch carrying these definitions was dropped: send them again with the next one."""
    global _sent_functions, _sent_strings
    with _intern_lock:
        if fns:
            _sent_functions = min(_sent_functions, fns[0][0])
        if strs:
            _sent_strings = min(_sent_strings, strs[0][0])
