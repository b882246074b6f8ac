"""The children of a run: the program (signals forwarded exactly once, its process group held)
and the sidecar process.
"""

from __future__ import annotations

import os
import sys

from ..protocol import rundir
from .summary import _data_dir_option

TYPE_CHECKING = False  # importing typing costs ~3 ms of every run's start-up
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import Any

    from ..config import Config
else:
    try:  # the C module under `signal`: `signal`'s enums (and `enum`) are not loaded on
        import _signal as signal  # the way to the program (an exit by a signal loads them)
    except ImportError:  # an interpreter without it
        import signal


# -- signals ---------------------------------------------------------------------------------
#
# A signal can reach the program two ways: sent to the launcher and forwarded, or sent to a
# whole process group (a terminal's ^C, `kill -INT -PGID`, a supervisor or CI runner stopping
# a job) that the program is in. The program must get each exactly once, and siginfo cannot
# tell a signal sent to our pid from one sent to our group. So:
#
# * With a controlling terminal, the program stays in the launcher's process group: job
#   control (^C, ^Z, fg/bg, reading the terminal) then works for it exactly as for `python`.
#   The terminal's own signals reach the whole group; the kernel marks them (si_code
#   SI_KERNEL), and those are not forwarded. Anything else (`kill PID`) is.
# * Without one (services, CI, `setsid`, pipelines started by other programs), the program
#   gets its own process group, so a group signal reaches only the launcher, which forwards it:
#   once. If the launcher itself is killed (SIGKILL to the group), the kernel kills the
#   program too (PR_SET_PDEATHSIG), as the group kill would have. The program leads that
#   group only when the launcher leads its own (see _GroupHolder).

# Every signal a shell, terminal or supervisor may send is forwarded (the program may
# handle any of them: SIGALRM, SIGWINCH, SIGPIPE, SIGUSR1, realtime signals, ...), except:
# SIGCHLD (the launcher's own), those that cannot be caught (SIGKILL, SIGSTOP), those the
# kernel raises for a fault of the receiving thread (blocking them would hide a real fault of
# the launcher), and the job-control stops, which must stop the launcher itself.
_NOT_FORWARDED = frozenset(getattr(signal, s) for s in (
    "SIGCHLD", "SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP",
    "SIGSYS", "SIGTSTP", "SIGTTIN", "SIGTTOU") if hasattr(signal, s))
_FORWARDED = tuple(sorted(s for s in signal.valid_signals() if s not in _NOT_FORWARDED))
_WAITED = frozenset((*_FORWARDED, signal.SIGCHLD))
_SI_KERNEL = 0x80  # siginfo.si_code of a signal the kernel sent (the terminal's ^C, ^\, hangup)


def _has_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _die_with_parent(launcher: int) -> None:
    """In the program's process, between fork and exec: have the kernel kill it with SIGKILL
    when the launcher dies (nothing where prctl is not available). ``ctypes`` loads here, in
    the child, not in the launcher."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return
    prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != launcher:  # the launcher died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def _inherited_fds() -> tuple[int, ...]:
    """Descriptors 3 and above the launcher inherited: the inheritable ones (everything the
    launcher opens itself is close-on-exec)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return ()
    fds = []
    for name in names:
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            pass  # the descriptor listdir itself used, closed by now
    return tuple(sorted(fds))


def _socket_activation(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """systemd socket activation (LISTEN_FDS) names the process meant to take the sockets by
    its pid: the launcher's. The program must see its own pid there, which is only known
    once it exists: a shell sets it just before the exec."""
    if env.get("LISTEN_PID") != str(os.getpid()) or not os.path.exists("/bin/sh"):
        return argv, env
    env = dict(env)
    del env["LISTEN_PID"]
    return ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', argv[0],
            *argv], env


class _GroupHolder:
    """A process group for the program that the program does not lead.

    Without a terminal the program gets its own group (signals to the launcher's group are
    then forwarded once); but a group *leader* cannot call ``os.setsid()``, which a program
    started by a shell script or a supervisor can. So a short-lived forked child leads the
    group, the program joins it, and the holder exits: the group lives on with the program
    in it, as a member."""

    def __init__(self) -> None:
        self._r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the holder: wait until the program is in the group, then go
            try:
                os.close(w)
                os.setpgid(0, 0)
                os.read(self._r, 1)
            finally:
                os._exit(0)
        os.close(self._r)
        self._w, self.pid = w, pid
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # it did it first (or is gone: the program then leads its own group)
        self.pgid = pid

    def release(self) -> None:
        os.close(self._w)
        os.waitpid(self.pid, 0)


class Supervisor:
    """Runs the program with every forwarded signal blocked in the launcher and taken with
    ``sigwaitinfo`` (whose siginfo tells the terminal's signals apart), and waits for it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.same_group = _has_terminal()
        # Blocked before the program exists: a signal arriving while it starts is held, not
        # lost (or fatal to the launcher). The program starts with the mask we were given.
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        argv, env = _socket_activation(argv, env)
        # The program leads its process group exactly when the launcher leads its own, as
        # it would in the launcher's place (a session leader started by a supervisor leads
        # its group; a command of a shell script does not, and may call os.setsid()).
        leader = os.getpgrp() == os.getpid()
        holder = None if self.same_group or leader else _GroupHolder()
        try:
            self.child = _Forked(argv, env, self._mask, None if self.same_group else
                                 0 if holder is None else holder.pgid,
                                 die_with_parent=not self.same_group)
        except BaseException:
            self._restore()
            raise
        finally:
            if holder is not None:
                holder.release()

    def wait(self, on_other_child: Callable[[], None] | None = None) -> int:
        """The program's exit status (negative: the signal that killed it). Forwards signals
        meanwhile; ``on_other_child()`` runs when another child (the sidecar) changes state."""
        try:
            while True:
                info = signal.sigwaitinfo(_WAITED)
                sig = info.si_signo
                if sig == signal.SIGCHLD:
                    rc = self.child.poll()
                    if rc is not None:
                        return rc
                    if on_other_child is not None:
                        on_other_child()
                elif info.si_code != _SI_KERNEL and info.si_pid != os.getpid():
                    # SI_KERNEL: the terminal's signal to the whole group (the program has
                    # it too) or the launcher's own (SIGXCPU); our own pid: a SIGPIPE of the
                    # launcher's own write. Anything else was sent to be forwarded.
                    try:
                        os.kill(self.child.pid, sig)
                    except ProcessLookupError:
                        pass
        finally:
            self._restore()

    def _restore(self) -> None:
        # Signals that came while the program was ending were meant for it: drop them. From
        # here on ^C or SIGTERM end the launcher quietly (no KeyboardInterrupt traceback).
        while signal.sigtimedwait(_WAITED, 0) is not None:
            pass
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)


# -- the run -----------------------------------------------------------------------------------

class _Child:
    """A child process of the launcher: ``pid``, and what a ``subprocess.Popen`` offers of its
    exit: ``returncode`` (negative: the signal that killed it), ``poll``, ``wait``, ``kill``."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                self.returncode = 0  # reaped elsewhere: its status is lost
                break
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Forked(_Child):
    """The program's process: what ``subprocess.Popen(argv, env=env, preexec_fn=...,
    pass_fds=<every descriptor the launcher inherited>, process_group=pgid)`` made of it,
    without loading ``subprocess`` (with ``threading``, ``selectors``, ``locale``, ``re`` and
    ``signal``'s enums: ~45 M instructions, ~12 ms on the way to the program's start).

    Forked (the launcher has no other thread), then in the child: its process group, SIGPIPE
    and SIGXFSZ back to their defaults (``restore_signals``), the signal mask the launcher
    was given, the parent-death signal, and ``exec`` (the ``PATH`` of ``env`` searched for a
    name without a slash, as ``subprocess`` does). The launcher's own descriptors are
    close-on-exec; every inheritable one goes to the program. An ``exec`` that fails is
    raised here as the ``OSError`` it was, as ``Popen`` raises it."""

    def __init__(self, argv: list[str], env: dict[str, str], mask: set[int],
                 pgid: int | None, die_with_parent: bool) -> None:
        launcher = os.getpid()
        err_r, err_w = os.pipe()  # close-on-exec: it closes as the exec succeeds
        try:
            try:
                pid = os.fork()
            except BaseException:
                os.close(err_r)
                raise
            if pid == 0:  # the child: nothing of it may return into the launcher's code
                code = 0
                try:
                    os.close(err_r)
                    if pgid is not None:
                        os.setpgid(0, pgid)
                    for sig in _RESTORED_SIGNALS:
                        signal.signal(sig, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                    if die_with_parent:
                        _die_with_parent(launcher)
                    if os.sep in argv[0]:
                        os.execve(argv[0], argv, env)
                    else:
                        os.execvpe(argv[0], argv, env)
                except OSError as exc:
                    code = exc.errno or 0
                except BaseException:
                    pass
                try:
                    os.write(err_w, str(code).encode() or b"0")
                finally:
                    os._exit(255)
        finally:
            os.close(err_w)
        try:
            said = b""
            while chunk := _read_retrying(err_r):
                said += chunk
        finally:
            os.close(err_r)
        self.pid = pid
        if said:  # the exec failed: the child has ended, collect it
            self.wait()
            code = int(said) if said.isdigit() else 0
            raise OSError(code, os.strerror(code) if code else "the program could not be "
                          "started", argv[0])


def _read_retrying(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 64)
        except InterruptedError:
            continue


class _Spawned(_Child):
    """The sidecar's process, started with ``posix_spawn`` (the sidecar is the longest part of
    a short run, so it starts first, before the program), in its own session (out of the way of every signal sent to the program), stdin and stdout pipes to
    the launcher, stderr into its log, signals as a new program has them, and none of the
    descriptors the launcher inherited for the program. What :class:`Sidecar` uses of it:
    ``stdin``, ``stdout`` and what every :class:`_Child` has."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                          0o666)
            try:
                # dup2 clears close-on-exec on the copies; the originals stay behind.
                actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                           (os.POSIX_SPAWN_DUP2, log, 2),
                           *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds())]
                self.pid = os.posix_spawn(
                    argv[0], argv, env, file_actions=actions, setsid=True,
                    setsigdef=_RESTORED_SIGNALS)
            finally:
                os.close(log)
        except BaseException:
            for fd in (in_w, out_r):
                os.close(fd)
            raise
        finally:
            os.close(in_r)
            os.close(out_w)
        self.stdin = open(in_w, "wb", buffering=0)  # noqa: SIM115 - closed by finish()
        self.stdout = open(out_r, "rb", buffering=0)  # noqa: SIM115
        self.returncode: int | None = None


# Python ignores these at start-up and a spawned program keeps what is ignored; set back to
# their defaults, as subprocess's restore_signals does.
_RESTORED_SIGNALS = tuple(getattr(signal, s) for s in ("SIGPIPE", "SIGXFSZ")
                          if hasattr(signal, s))


class Sidecar:
    """The sidecar process of one run, started without waiting for it. Its READY line, its
    summary and, when it fails, the cause are read when the launcher needs them."""

    def __init__(self, run_dir: str, db: str, run_id: str, cfg: Config,
                 extra_args: tuple[str, ...] = ()) -> None:
        import time

        self.run_dir, self.run_id, self.data_dir = run_dir, run_id, cfg.data_dir
        self.log_path = os.path.join(run_dir, rundir.SIDECAR_LOG)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")
               and k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
        env["FLOWAGENT_ENABLED"] = "0"  # the sidecar is never recorded
        for name in ("FLOWAGENT_SERVICE", "FLOWAGENT_HOST"):  # what the run's row names
            if os.environ.get(name):
                env[name] = os.environ[name]
        self.proc = _Spawned(
            [sys.executable, "-m", "flowagent.sidecar", "--run-dir", run_dir, "--db", db,
             "--run-id", run_id, "--retention", str(cfg.retention_sessions),
             "--max-data-size", str(cfg.max_data_size),
             # the run starts now: the program does not wait for the sidecar, and a short
             # one may end before the sidecar has made the run's row
             "--started-ns", str(time.time_ns()),
             *(a for h in cfg.hooks for a in ("--hook", h)), *extra_args],
            env, self.log_path)
        self.started = False    # it said READY: the run's row exists in the store
        self.failure = ""       # why it failed, once known
        self._reported = False

    def check(self) -> None:
        """If the sidecar has exited on its own, say so now: the program goes on recording
        into its rings, and the user learns it now, not when a long-running program ends."""
        if not self.failure and self.proc.poll() is not None:
            self._failed(self.proc.stdout.read() if self.proc.stdout else b"")
            self.report()

    def finish(self, end: dict[str, Any] | None = None,
               timeout: float = 120.0) -> dict[str, Any] | None:
        """Tell the sidecar to drain and finish (close its stdin, after sending it ``end``,
        the launcher's part of the run's row (a RunEnd's fields), to store with its last
        write; the sidecar sets the status); its summary, or None if it failed (``failure``
        says why).

        The summary is the sidecar's last word, written once everything is stored and
        closed: it is returned as soon as its line is complete, without waiting for the
        sidecar's process to be torn down (the kernel frees its memory before its pipe
        closes: milliseconds at the end of every run). :meth:`reap` collects it."""
        import select
        import time

        from ..protocol.jsonline import dumps

        if self.failure:
            return None
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        pending = dumps({"run": end}).encode() + b"\n" if end else b""
        w: int | None = proc.stdin.fileno()
        r = proc.stdout.fileno()
        out = b""
        deadline = time.monotonic() + timeout
        while True:
            if w is not None and not pending:
                proc.stdin.close()  # the launcher's word that the program has ended
                w = None
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                self._failed(out + self._rest(), f"it did not finish within {timeout:g} s")
                return None
            ready_r, ready_w, _ = select.select([r], [w] if w is not None else [], [], left)
            if ready_w and w is not None:
                try:  # what a pipe select calls writable takes without blocking
                    pending = pending[os.write(w, pending[:select.PIPE_BUF]):]
                except OSError:  # it has exited: what it said before tells why
                    pending = b""
            if not ready_r:
                continue
            chunk = os.read(r, 65536)
            if not chunk:  # it exited without a summary
                self._failed(out)
                return None
            out += chunk
            summary = _summary_line(out)
            if summary is not None:
                self.started = out.startswith(b"READY")
                proc.stdout.close()  # it writes nothing after its summary
                return summary

    def _rest(self) -> bytes:
        """What the sidecar wrote before it exited (after it was killed)."""
        self.proc.wait()
        return self.proc.stdout.read() if self.proc.stdout else b""

    def reap(self) -> None:
        """Collect the sidecar's exit (a caller that goes on living after the run)."""
        self.proc.wait()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def report(self) -> None:
        """The failure, as one line, once."""
        if not self.failure or self._reported:
            return
        self._reported = True
        sys.stderr.write(
            f"flowagent: error: {self.failure}; what the program recorded stays in "
            f"{self.run_dir}/rings: store it with 'flowagent sidecar --resume {self.run_id}"
            f"{_data_dir_option(self.data_dir)}' once the cause is fixed (log: "
            f"{self.log_path})\n")
        sys.stderr.flush()

    def _failed(self, out: bytes, why: str = "") -> None:
        self.started = out.startswith(b"READY")
        rc = self.proc.wait()  # it has exited (its stdout closed) or was killed
        if not why and rc is not None and rc < 0:
            why = f"killed by signal {-rc}"
        if not why:  # its own last word: the exception that stopped it
            said = [line[6:] for line in out.decode(errors="replace").splitlines()
                    if line.startswith("ERROR ")]
            why = said[-1].strip() if said else ""
        if not why:
            try:
                with open(self.log_path, "rb") as f:
                    lines = f.read().decode(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            why = lines[-1].strip() if lines else f"exit status {rc}, no output"
        self.failure = f"the sidecar {'stopped' if self.started else 'did not start'} ({why})"


def _summary_line(out: bytes) -> dict[str, Any] | None:
    """The sidecar's summary: its last line, once complete (it writes nothing after it). A
    line a run-end hook printed on the sidecar's stdout is not taken for it: the summary
    always names these keys."""
    from ..protocol.jsonline import loads  # not json: it loads re, after the program's end

    if not out.endswith(b"\n"):
        return None
    last = out[out.rfind(b"\n", 0, len(out) - 1) + 1:]
    if not last.startswith(b"{"):
        return None
    try:
        summary = loads(last)
    except ValueError:
        return None
    if not isinstance(summary, dict) or not {"sessions", "run_row", "pending"} <= summary.keys():
        return None
    return summary
