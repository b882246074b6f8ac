"""Moves recorded calls from the process's buffer into its ring, off the program's call path.

A daemon *flusher* thread wakes every ``flush_interval_ms`` (or early, when a session ends or
the buffer fills), encodes what accumulated into one msgpack+zstd batch and writes it into the
ring. The program thread only ever packs integers into the recorder's buffer; the flusher
takes it in batches of at most :data:`BATCH_CALLS` calls (:func:`recorder.take_calls`,
already in the wire's column layout).

Forks: ``os.register_at_fork`` gives the child a fresh ring, ids and flusher; a fork that
bypassed the hooks is caught by a pid check before anything is written, so two processes
never write into one ring. The parent's side of a fork runs no agent code where it can be
avoided: the child works out which call forked it from the stack it inherited, and the
parent keeps its pending records (neither twin's buffer is even copied into the child,
see ``_speedups.c`` and ``pending.py``), so ``os.fork()`` costs about what it costs plainly. Only a
program with no thread of its own on Python 3.12+ has the flusher stopped for the fork
(:meth:`Transport._before_fork`), so it is single-threaded when Python counts its threads
for the fork warning: on 3.13, which counts after the parent's hooks, the flusher starts
again as os.fork() returns (C twin, :func:`_patch_os_fork`) or once the program goes on
(:meth:`Transport._after_fork_parent`). Exit: a final
flush runs from ``atexit`` (registered first, so it runs last) and from multiprocessing's
exit path for forked workers, which end in ``os._exit``.
"""

from __future__ import annotations

import _thread
import atexit
import os
import random
import sys
import threading
import time

from . import audit, lineage, recorder, tracecontext
from ..protocol.ring import RingWriter
from ..protocol.rundir import ring_name, rings_dir
from ..protocol.wire import VERSION, Encoder, PlainEncoder

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any


# Captured when the agent starts, before any monkey-patching (gevent's patch_all replaces
# _thread.allocate_lock): the flusher is a native thread and must only ever block on native
# locks, or it would run a gevent hub of its own and share gevent semaphores with the program.
_native_lock = _thread.allocate_lock
_start_native_thread = _thread.start_new_thread
_native_get_ident = _thread.get_ident


# Calls per batch at most (1.7 MB of records before compression).
BATCH_CALLS = 1 << 14

# zstd's level for the batches. The flusher compresses in the program's process (its CPU
# time is the program's): level 1 (zstd's "fast" strategy) costs ~55 instructions less per
# call record than the default 3 ("dfast": ~390 → ~335 on 1M small calls) for ~3 % more
# bytes in the ring (0.73 → 0.76 bytes per record).
ZSTD_LEVEL = 1


class _Wakeup:
    """set()/wait(timeout) on one native lock: wait() returns when set() was called or the
    timeout passed, and re-arms itself."""

    def __init__(self) -> None:
        self._lock = _native_lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def wait(self, timeout: float) -> None:
        self._lock.acquire(True, timeout)


class Transport:
    def __init__(self, run_dir: str, ring_size: int, interval_ms: int,
                 info: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.ring_size = ring_size
        self.interval = max(interval_ms, 1) / 1000.0
        self.info = info
        self.lock = _native_lock()
        self.flushing = 0  # the thread that last took the lock in flush()
        self.again = False  # a flush was asked for from inside the one running
        # The interpreter's main thread: a child forked from any other thread has none, and
        # no interpreter exit (atexit) ends it: it ends when its last thread does.
        self.main_ident = _native_get_ident()
        self.forked_in_thread = False
        self._open_for(os.getpid())
        self._paused_for_fork = False
        self._yield_to_fork = False
        self._restart_lock = _native_lock()
        self._audit_watch: audit.Watch | None = None
        self._restart_pending = False  # the flusher waits for the program to go on (3.13)
        self._fork_call: tuple[int, int] = (0, 0)  # (frame id, instruction) of os.fork()
        self._checking = False
        if _FORK_WARNS:
            os.register_at_fork(before=self._before_fork,
                                after_in_parent=self._after_fork_parent,
                                after_in_child=self._after_fork_child)
            if _FORK_COUNTS_AFTER_HOOKS:
                # Now, before the program runs: a hook added later (the program's own)
                # never sees the agent's hook added. It hands this one every event only
                # while a restart is pending.
                self._audit_watch = audit.watch(self._audit)
                _patch_os_fork(self)
        else:
            os.register_at_fork(after_in_child=self._after_fork_child)
        atexit.register(self.close)
        _patch_os_exit(self)
        _patch_os_exec(self)

    # -- lifecycle ---------------------------------------------------------------------
    def _open_for(self, pid: int) -> None:
        self.pid = pid
        self.key = random.SystemRandom().getrandbits(48) or 1
        self.seq = 0
        self.closed = False
        self.stopping = False
        self.anchor = (time.time_ns(), time.perf_counter_ns())
        self.thread_names: dict[int, str] = {}
        self.sent_stats = [0, 0, 0, 0]
        # The ring is created with the first batch that carries something: a Python process
        # that records nothing (a helper `python -c`, a resource tracker) leaves no ring.
        self.ring: RingWriter | None = None
        self.control_generation = 0
        # The batch codec (msgpack, zstandard) once prepare_encoder() loaded it: until then
        # batches go out with PlainEncoder, which imports nothing (a forked child inherits
        # the loaded modules and makes its own encoder at once).
        self.encoder: Encoder | None = Encoder(ZSTD_LEVEL) if _codec_loaded else None
        recorder.S.flush_now = self.flush
        self._start_flusher()

    def _start_flusher(self) -> None:
        self.event = _Wakeup()
        self.stopping = False
        recorder.S.wake = self.event.set
        # A bare native thread, not a threading.Thread: threading's bookkeeping of a thread
        # started before gevent.monkey.patch_all() breaks when the thread ends (_delete()
        # looks itself up with gevent's get_ident: a KeyError printed by the ending thread,
        # which during interpreter shutdown is a fatal "_enter_buffered_busy" abort), and the
        # program's threading.enumerate() and active_count() never see the agent's thread.
        self.finished = _native_lock()
        self.finished.acquire()
        self.thread_ident = _start_native_thread(self._run, (self.event, self.finished))

    def _run(self, event: _Wakeup, finished: Any) -> None:
        try:
            self._loop(event)
        finally:
            finished.release()

    def _stop_flusher(self) -> None:
        self.stopping = True
        self.event.set()
        if _native_get_ident() != self.thread_ident and self.finished.acquire(True, 2.0):
            self.finished.release()

    def _create_ring(self) -> RingWriter:
        pid = self.pid
        info = dict(self.info, pid=pid, ppid=os.getppid(), argv=[_escaped(a) for a in sys.argv],
                    executable=_escaped(sys.executable))
        path = os.path.join(rings_dir(self.run_dir), ring_name(pid, self.key))
        ring = self.ring = RingWriter(path, self.ring_size, pid, os.getppid(), self.key,
                                      self.anchor[0], info)
        ring.init_control(not recorder.S.on, recorder.S.sample_ppm)
        return ring

    def _before_fork(self) -> None:
        # Python 3.12+ only. Nothing the child uses is shared with the flusher: it makes its
        # own lock, buffer, encoder and ring (below), so a fork of a program with threads of
        # its own never waits for the flusher. A program with no thread of its own has the
        # flusher stopped for the fork, so it stays single-threaded at fork time as plainly
        # (3.12 warns about forking a multi-threaded process): the flusher ends after the
        # batch it is encoding, if any, not after everything buffered.
        self._restart_pending = False  # (nothing below may start it: os.listdir is audited)
        self._paused_for_fork = threading.active_count() <= 1
        if self._paused_for_fork:
            if _FORK_COUNTS_AFTER_HOOKS:
                self._fork_call = _fork_call()
            self._yield_to_fork = True
            self._stop_flusher()
            _wait_single_threaded()

    def _after_fork_parent(self) -> None:
        self._yield_to_fork = False
        if not self._paused_for_fork or self.closed:
            return
        if not _FORK_COUNTS_AFTER_HOOKS:
            self._start_flusher()
            return
        # Python 3.13 counts the process's threads for its warning after these hooks ran,
        # so the flusher cannot start here: it starts as os.fork() returns (the C twin's
        # os.fork wrapper, see _patch_os_fork), or else when the program goes on after
        # os.fork() returned, at its first audited event (an open, an import, a socket, a
        # sleep, a thread started, an exec), or when the buffer asks for a flush. Until
        # then nothing is lost: the records wait in the buffer, and the exit's (or an
        # exec's) flush sends them.
        self._restart_pending = True
        recorder.S.wake = self._restart_flusher

    @property
    def _restart_pending(self) -> bool:
        return self._pending_restart

    @_restart_pending.setter
    def _restart_pending(self, pending: bool) -> None:
        self._pending_restart = pending
        if self._audit_watch is not None:
            audit.want_everything(self._audit_watch, pending)

    def _restart_flusher(self, returned: bool = False) -> None:
        """Start the flusher stopped for a fork, once os.fork() has returned (``returned``:
        known to have): not while it still runs the program's own after-fork hooks
        (registered after ours) or the agent code recording them. From any thread, any
        number of times; never raises."""
        if not self._restart_pending or self._checking:
            return
        self._checking = True  # (looking at the stack raises audit events of its own)
        try:
            if not returned and _still_in(self._fork_call):
                return
            with self._restart_lock:
                if not self._restart_pending:
                    return
                self._restart_pending = False
                if not self.closed and os.getpid() == self.pid:
                    self._start_flusher()
        except Exception:
            recorder.S.agent_errors += 1
        finally:
            self._checking = False

    def _fork_returned(self) -> None:
        """Python 3.13+, C twin: os.fork() or os.forkpty() returned in this process (the
        parent); called by the wrapper from _patch_os_fork."""
        if self._restart_pending and os.getpid() == self.pid:
            self._restart_flusher(returned=True)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        """Python 3.13+: restarts the flusher after a fork (see _after_fork_parent). Never
        raises (an exception would fail the audited operation); an audit hook cannot be
        removed, so this returns at once for every event while no restart is due."""
        if self._restart_pending and event not in _NOT_GOING_ON:
            self._restart_flusher()

    def _after_fork_child(self) -> None:
        # Which call forked this child, read from the stack it inherited before the recorder
        # forgets the parent's frames (the parent ran no hook of ours to note it).
        lineage.inherit_at_fork(self.key, self.pid)
        self.forked_in_thread = self.forked_in_thread or _native_get_ident() != self.main_ident
        # The flusher may have held these at the fork; it does not exist here.
        self.lock = _native_lock()
        self.flushing = 0
        self._paused_for_fork = self._yield_to_fork = self._restart_pending = False
        self._checking = False
        self._restart_lock = _native_lock()
        recorder.reset_after_fork()
        tracecontext.reset_after_fork()
        from . import backends

        if backends._profile is not None:
            backends._profile.restart_after_fork()
        try:
            self._open_for(os.getpid())
        except Exception:
            recorder.S.on = False  # no ring for this child: record nothing rather than harm it

    # -- flushing ----------------------------------------------------------------------
    def _loop(self, event: _Wakeup) -> None:
        sys.setprofile(None)  # the flusher is ours: never recorded, never profiled
        while not self.stopping:
            event.wait(self.interval)
            if self.stopping or event is not self.event:
                # A fork or the exit flushes (or keeps the buffer) itself; a flusher that
                # outlived its stop (a batch slower than the wait for it) and was replaced
                # after the fork ends too, rather than run beside its successor.
                break
            try:
                if self.forked_in_thread and not _program_threads_alive(self.thread_ident):
                    # A child forked from a thread other than the main one, whose threads
                    # have all ended: plainly the process ends now (no atexit runs). The
                    # flusher must not keep it alive: final flush, and end.
                    self.close()
                    break
                self.flush()
                self._read_control()
            except Exception:
                recorder.S.agent_errors += 1

    def _read_control(self) -> None:
        """Pause/resume and sampling rate, as the sidecar last wrote them in our ring."""
        with self.lock:  # never once close() turned recording off for the last batch
            if self.ring is None or self.stopping:
                return
            paused, ppm = self.ring.control()
            apply_control(paused, ppm)
            generation = self.ring.control_generation()
            changed = generation != self.control_generation
            self.control_generation = generation
        if changed:  # the control file changed: its globs (read outside the flush lock)
            from .runstate import apply_selection

            apply_selection(self.run_dir)

    def _thread_names(self, threads: set[int], starts: list[tuple[Any, ...]]
                      ) -> list[list[Any]]:
        """Names of threads seen for the first time (session starts carry their own)."""
        known = self.thread_names
        for s in starts:
            known[s[3]] = s[4]
        new = threads.difference(known)
        if not new:
            return []
        live = {t.ident: t.name for t in threading.enumerate()}
        out = []
        for ident in new:
            known[ident] = name = live.get(ident) or recorder.thread_names.pop(
                ident, f"Thread-{ident}")
            out.append([ident, name])
        return out

    def flush(self, final: bool = False) -> None:
        me = _native_get_ident()
        if (self.flushing == me and self.lock.locked()) or recorder.in_critical_section():
            # Entered from inside agent code in this thread (its own flush, or a recorder
            # lock held): a finalizer run by a collection an allocation there triggered, a gc
            # callback or a signal handler ended a recorded session and asked for a
            # synchronous flush. Waiting for a lock this thread holds, or one the flusher
            # holds while it waits for this thread's, would hang the program for good; what
            # was recorded stays buffered for the next flush.
            self.again = True
            recorder.S.wake()
            return
        with self.lock:
            self.flushing = me
            if self.closed:
                return
            if final:
                recorder.S.on = False
            if os.getpid() != self.pid:
                # Forked without our at-fork hooks (a C extension calling fork()): start over.
                recorder.reset_after_fork()
                tracecontext.reset_after_fork()
                self._open_for(os.getpid())
            # In batches of at most BATCH_CALLS calls: what threads recording flat out buffer
            # while the flusher waits for the GIL can be 10^5 calls, and one batch of them
            # held the GIL for long C stretches (columns, msgpack) and left tens of MB of
            # freed buffers behind, which made every os.fork() of the program slow.
            # Bounded: about what a full buffer holds, also while threads keep recording.
            # The final flush takes everything: nothing starts recording any more, and a
            # backlog left by a flush that stopped for a fork may sit before a full buffer.
            batches = recorder.S.max_buf // BATCH_CALLS + 2
            for _ in range(2 * batches if final else batches):
                self.again = False
                n, columns, threads = recorder.take_calls(BATCH_CALLS)
                more = n == BATCH_CALLS
                self._send(n, columns, threads, final and not more)
                if self._yield_to_fork and not final:
                    return  # (a fork waits: the rest stays buffered for the next flush)
                if not more and (final or not self.again):
                    return  # (again: a session ended inside this flush, see above: send it)
            if final:
                self._send(0, b"", set(), True)

    def _send(self, n: int, columns: bytes, threads: set[int], final: bool) -> None:
        S = recorder.S
        links = lineage.take()  # made with the session starts taken below: never later
        starts = S.session_starts
        ns = len(starts)
        new_starts = starts[:ns]
        del starts[:ns]
        traces = tracecontext.take()  # after the calls: never in a later batch than they
        displaced = _displaced()
        stats = [S.agent_errors + _shape_failures(), S.dropped, S.sampled_out, displaced[0]]
        if not (n or new_starts or links or traces or final) and stats == self.sent_stats:
            return
        ring = self.ring
        if ring is None:
            if not (n or new_starts or links or traces):
                return
            ring = self._create_ring()
        fns, strs = recorder.take_definitions()
        self.seq += 1
        batch = {
            "v": VERSION, "pk": self.key, "pid": self.pid, "seq": self.seq,
            "anchor": list(self.anchor), "defs": fns, "strings": strs,
            "starts": new_starts,
            "threads": self._thread_names(threads, new_starts), "agent_errors": stats[0],
            "sampled_out": stats[2],
            "final": final,
        }
        if links:
            batch["links"] = links
        if traces:
            batch["traces"] = traces
        if displaced[0]:
            # the program's own profile function displaced recording: [times, ns]
            batch["profile_displaced"] = list(displaced)
        payload = (self.encoder or _PLAIN).encode_columns(batch, n, columns)
        new_drops = stats[1] - self.sent_stats[1]
        if new_drops:
            ring.count_dropped(0, new_drops)
        self.sent_stats = stats
        if not ring.write(self.seq, payload, n):
            # The definitions in a dropped batch were never seen: send them again.
            recorder.unsend_definitions(fns, strs)

    def prepare_encoder(self) -> None:
        """Called where the program is about to record and imports anyway (the import hook,
        the main-script hook): load msgpack and zstandard for the batches if this is a safe
        point (see "the batch codec" below). Reached through ``runstate.transport``, so the
        hooks do not import this module. Never raises."""
        global _codec_loaded
        if (self.encoder is not None or _native_get_ident() != self.main_ident
                or os.getpid() != self.pid or _ending()):
            return
        try:
            self.encoder = Encoder(ZSTD_LEVEL)
            _codec_loaded = True
        except Exception:  # noqa: BLE001 - without the packages: batches stay plain
            recorder.S.agent_errors += 1

    def close(self) -> None:
        """Final flush at exit (bounded: encoding what is buffered, one non-blocking write)."""
        if self.closed or os.getpid() != self.pid:
            return
        self._restart_pending = False  # no flusher restarted by an event of the exit
        self.stopping = True
        # Nothing starts recording once the last batch is being made: a call begun now (a
        # finalizer run by a collection the final flush itself triggers, a daemon thread)
        # could never be sent, and its session, announced in that batch, would be stored as
        # never ended. Calls already open still end and are kept.
        recorder.S.on = False  # (again under the lock in flush: see _read_control)
        try:
            self.flush(final=True)
        except Exception:
            pass
        self.closed = True
        if self.ring is not None:
            self.ring.close()


# -- the batch codec -------------------------------------------------------------------------
#
# msgpack and zstandard (with the typing, re and datetime they load) are most of what the
# agent imports, and a process that records nothing never needs them. Where they are
# imported matters more than when:
#
# * never by the flusher: a thread importing holds the module's import lock, and a child
#   forked meanwhile inherits it held by a thread it does not have (its own first import of
#   that module would wait forever; tests/reliability/test_flusher_imports.py);
# * never while the program is ending: importing them runs eval() on strings (their named
#   tuples), and CPython forgets that an unhandled KeyboardInterrupt must end the process
#   by SIGINT when any thread eval()s a string after it (the program would exit with
#   status 1 instead), so neither at exit nor in any thread but the main one, which is the
#   one that raises it.
#
# So the main thread loads them at a point where the program imports anyway and is about to
# record: a selected module found by the import hook, or a main script with functions. Until
# then (and in every process that records only without such a point), batches go out
# uncompressed, packed by PlainEncoder, which imports nothing.

_codec_loaded = False
_PLAIN = PlainEncoder()


def _ending() -> bool:
    """Has the program's main thread finished (or died of an unhandled exception)?"""
    if getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) \
            is not None:
        return True
    return not threading.main_thread().is_alive()


# Python 3.12+ warns when a process with more than one thread forks; 3.12 counts the
# threads before the parent's after-fork hooks run, 3.13 after them.
_FORK_WARNS = sys.version_info >= (3, 12)
_FORK_COUNTS_AFTER_HOOKS = sys.version_info >= (3, 13)
# Audit events that never mean the program went on after a fork: the next fork itself,
# and what agent code raises all the time (id(), frame.f_code, sys._getframe): skipped
# without looking at the stack.
_NOT_GOING_ON = frozenset({"os.fork", "os.forkpty", "builtins.id", "object.__getattr__",
                           "sys._getframe", "sys._getframemodulename"})


def _fork_call() -> tuple[int, int]:
    """(frame id, instruction offset) of the call to os.fork() running the before-fork
    hooks (called from one: the hooks run from C, no frame between), or (0, 0)."""
    try:
        frame = sys._getframe(2)
    except ValueError:
        return (0, 0)
    return (id(frame), frame.f_lasti)


def _still_in(call: tuple[int, int]) -> bool:
    """Is the frame that called os.fork() on the stack, still at that call? (Its id alone
    could be a new frame's; at the same instruction too, at worst a restart waits.)"""
    ident, lasti = call
    frame = sys._getframe(1) if ident else None
    while frame is not None:
        if id(frame) == ident:
            return frame.f_lasti == lasti
        frame = frame.f_back
    return False


def _program_threads_alive(own: int) -> bool:
    """Whether any thread of the program (the flusher ``own`` aside) is still running."""
    for t in threading.enumerate():
        if t.ident != own and t.is_alive():
            return True
    return False


def _wait_single_threaded(limit_s: float = 0.05) -> None:
    """The flusher has returned; wait (briefly) until the kernel no longer counts its thread,
    which is what Python 3.12's multi-threaded fork warning reads (Linux)."""
    deadline = time.monotonic() + limit_s
    try:
        while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
            time.sleep(0.0002)
    except OSError:
        pass


def _escaped(text: object) -> str:
    """Text that is valid UTF-8: undecodable bytes of a command line (lone surrogates) are
    escaped, so the process is still recorded and the store can hold its arguments."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def apply_control(paused: bool, sample_ppm: int) -> None:
    recorder.S.on = not paused
    recorder.S.sample_ppm = sample_ppm


_real_os_exit = os._exit


def _patch_os_exit(transport: Transport) -> None:
    """``os._exit`` skips atexit; forked children (``if os.fork() == 0: ...; os._exit(0)``)
    end that way, so flush first. Bounded: one encode and one non-blocking ring write."""

    def _exit(status: int) -> None:
        try:
            transport.close()
        except BaseException:
            pass
        _real_os_exit(status)

    _exit.__wrapped__ = _real_os_exit  # type: ignore[attr-defined]
    os._exit = _exit  # type: ignore[assignment]  # (os._exit is typed NoReturn; so is this)


def _patch_os_fork(transport: Transport) -> None:
    """Python 3.13+: the flusher stopped for a fork starts again as os.fork() (os.forkpty())
    returns in the parent, after Python counted the threads for its warning and after the
    program's own after-fork hooks ran. The C twin wraps both in C functions (no frame of
    the agent's on any stack, the warning still points at the program's line); the pure
    twin leaves them alone and restarts at the program's next audited event (see
    _after_fork_parent), as does a fork through ``posix.fork`` directly."""
    speedups = recorder._speedups
    if speedups is None or not hasattr(speedups, "fork_wrappers") or not hasattr(os, "fork"):
        return
    try:
        fork, forkpty = speedups.fork_wrappers(os.fork, getattr(os, "forkpty", None),
                                               transport._fork_returned)
    except Exception:
        recorder.S.agent_errors += 1
        return
    os.fork = fork
    if forkpty is not None:
        os.forkpty = forkpty


def _patch_os_exec(transport: Transport) -> None:
    """``os.exec*`` replaces the process image: nothing after it runs, neither the flusher
    nor ``atexit``. Flush what was recorded first (every ``os.exec*`` function goes through
    ``os.execv`` or ``os.execve``). The process keeps recording if the exec fails."""

    def patched(real: Any) -> Any:
        def exec_(*args: Any) -> Any:
            try:
                if os.getpid() == transport.pid:
                    transport.flush()
            except Exception:
                recorder.S.agent_errors += 1
            return real(*args)

        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(exec_, attr, getattr(real, attr, None))
        exec_.__wrapped__ = real  # type: ignore[attr-defined]
        return exec_

    os.execv = patched(os.execv)
    os.execve = patched(os.execve)


def _displaced() -> tuple[int, int]:
    from . import backends

    return backends.displaced()


def _shape_failures() -> int:
    from . import shapes

    return int(getattr(shapes, "failures", 0))
