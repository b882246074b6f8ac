"""``flowagent run``: start the sidecar, run the program under the agent, report, pass its exit
status through.

The program must not be able to tell it is being launched: it gets its own stdin/stdout/
stderr, ``sys.argv`` and ``sys.path[0]`` as under ``python``, every signal meant for it exactly
once, and the launcher exits with the program's exit status, or dies by the same signal that
killed it.

Start-up is on every run's critical path, so this module imports only ``os``, ``signal`` and
``sys`` up front; the rest comes when a step needs it. The program starts as soon as the
sidecar *process* exists: the sidecar finds the program's ring files whenever it looks, and a
sidecar that fails is reported the moment it exits (the rings keep what the program records
until ``flowagent sidecar --resume`` stores it).
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from .errors import StoreError, TargetError

TYPE_CHECKING = False  # importing typing costs ~3 ms of every run's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from .config import Config
    from .store.api import RunEnd


class Target:
    """What to run: a script, ``-m module`` or ``-- program``, and the arguments it gets."""

    __slots__ = ("args", "kind", "name", "path")

    def __init__(self, kind: str, name: str, args: tuple[str, ...], path: str = "") -> None:
        self.kind = kind    # "script" | "module" | "program"
        self.name = name    # script path, module name, or program as typed
        self.args = args
        self.path = path    # resolved script/program path

    def describe(self) -> str:
        return {"script": self.name, "module": f"-m {self.name}",
                "program": f"-- {self.name}"}[self.kind]


def bootstrap_dir() -> str:
    """The directory holding our ``sitecustomize.py`` (checkout or installed copy)."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(os.path.dirname(pkg), "sitecustomize"),
                      os.path.join(pkg, "_bootstrap")):
        if os.path.isfile(os.path.join(candidate, "sitecustomize.py")):
            return candidate
    raise TargetError("flowagent's bootstrap (sitecustomize.py) is missing from the "
                      "installation; reinstall flowagent")


def resolve_target(kind: str, name: str, args: list[str], cwd: str) -> Target:
    """Check that the target exists and is something Python (or the OS) can run, before
    anything is started: a bad target is one clear error, not a run."""
    if kind == "module":
        import importlib.util

        saved = list(sys.path)
        sys.path.insert(0, cwd)
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path[:] = saved
        if spec is None:
            raise TargetError(f"no module named {name!r} (looked from {cwd} and sys.path); "
                              "check the name, or run a script with 'flowagent run path.py'")
        return Target("module", name, tuple(args))
    if kind == "program":
        if os.sep not in name:
            found = _which(name)
            if found is None:
                raise TargetError(f"program {name!r} not found on PATH; install it or give "
                                  "its path")
            return Target("program", name, tuple(args), found)
        if os.path.isdir(name):
            raise TargetError(f"{name!r} is a directory, not a program; give a program "
                              "('-- cmd'), a script (app.py) or a module (-m pkg.mod)")
        if not os.access(name, os.X_OK):
            why = "is not executable" if os.path.exists(name) else "does not exist"
            raise TargetError(f"program {name!r} {why}; give the path of an executable "
                              "program, or run a script with 'flowagent run path.py'")
        return Target("program", name, tuple(args), name)
    path = os.path.join(cwd, name)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "__main__.py")):
            return Target("script", name, tuple(args), path)
        raise TargetError(f"{name!r} is a directory without __main__.py; give a script "
                          "(app.py), a module (-m pkg.mod) or a program (-- cmd)")
    if not os.path.exists(path):
        hint = (f"; to run the program {name!r} from PATH use 'flowagent run -- {name} ...'"
                if _which(name) else "")
        raise TargetError(f"no such script {name!r}{hint}")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"\0" in head:
            raise TargetError(f"{name!r} is not a Python program (it looks binary); run "
                              f"programs with 'flowagent run -- {name}'")
    # Anything else that exists (/dev/stdin, a FIFO, <(...)) is read by Python as it comes,
    # as `python /dev/stdin` does; peeking at it here would take the program's input.
    return Target("script", name, tuple(args), path)


def _which(name: str) -> str | None:
    from shutil import which  # only when PATH is searched: shutil costs a few ms

    return which(name)


def exec_plain(kind: str, name: str, args: list[str] | tuple[str, ...]) -> NoReturn:
    """Become the program, without flowagent: the disabled switch, and the fallback when
    recording cannot start. Nothing of ours stays between the caller and the program, so its
    exit status, signals and process tree are exactly those of ``python ...``. Never returns."""
    if kind == "program":
        file, argv = name, [name, *args]
    else:
        file = sys.executable
        argv = [sys.executable, *(("-m", name) if kind == "module" else (name,)), *args]
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores these at start-up and exec keeps what is ignored; a program expects
    # them as its parent had them (as subprocess's restore_signals does).
    for sig in _RESTORED_ON_EXEC:
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(file, argv)
    except OSError as exc:
        raise TargetError(f"cannot start {name!r}: {exc.strerror}") from None


_RESTORED_ON_EXEC = tuple(getattr(signal, s) for s in ("SIGPIPE", "SIGXFSZ")
                          if hasattr(signal, s))


def _new_run_id() -> str:
    """Time-ordered and readable; 32 random bits tell apart runs of the same second, and
    :func:`_claim_run_dir` makes sure no two runs ever get the same id."""
    import time

    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + os.urandom(4).hex()


def _claim_run_dir(data_dir: str) -> tuple[str, str]:
    """A new run id and its directory, made atomically: an id whose directory exists (a
    concurrent run, a clock set back) is never reused."""
    runs = os.path.join(data_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    while True:
        run_id = _new_run_id()
        run_dir = os.path.join(runs, run_id)
        try:
            os.mkdir(run_dir)
        except FileExistsError:
            continue
        os.mkdir(os.path.join(run_dir, "rings"))
        return run_id, run_dir


def _script_dir(path: str) -> str:
    """Where the script's own code lives: its real directory. A script read from a pipe
    (/dev/stdin, <(...)) has a name only as ``/proc/PID/fd/pipe:[N]``: its root is then
    ``/proc/self/fd``, which each process of the run resolves to its own."""
    real = os.path.realpath(path)
    return os.path.dirname(real) if os.path.exists(real) else "/proc/self/fd"


def _pythonpath(boot: str, current: str | None) -> str:
    parts = [boot] + [p for p in (current or "").split(os.pathsep) if p and p != boot]
    return os.pathsep.join(parts)


def _command(target: Target, instruments_main: bool) -> list[str]:
    if target.kind == "module":
        return [sys.executable, "-m", target.name, *target.args]
    if target.kind == "program":
        args = list(target.args)
        if (instruments_main and _is_python_name(os.path.basename(target.name))
                and args and args[0].endswith(".py") and os.path.isfile(args[0])
                and os.path.realpath(target.path) == os.path.realpath(sys.executable)):
            # `-- python app.py`: the same as `flowagent run app.py` (so __main__ is recorded).
            return _script_command(args[0], args[1:])
        return [target.path, *args]
    if instruments_main and not os.path.isdir(target.path):
        return _script_command(target.name, target.args)
    return [sys.executable, target.name, *target.args]


def _script_command(script: str, args: Sequence[str]) -> list[str]:
    """``python script.py`` bypasses import hooks: a regular file runs as it is and the
    agent's audit hook swaps in its instrumented functions (agent/mainhook.py); a script
    that can be read only once (a pipe) runs under the shim that reads and rebuilds it."""
    if os.path.isfile(script):
        return [sys.executable, script, *args]
    return [sys.executable, "-m", "flowagent.agent.runmain", script, *args]


def _is_python_name(name: str) -> bool:
    """python, python3, python3.11, ..."""
    return name.startswith("python") and all(c.isdigit() or c == "." for c in name[6:])


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


def _die_with_parent() -> Callable[[], None] | None:
    """A callable for the child (between fork and exec) that has the kernel kill it with
    SIGKILL when the launcher dies; None where prctl is not available."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    launcher = os.getpid()

    def arm() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != launcher:  # the launcher died before the line above
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


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
        import subprocess

        self.same_group = _has_terminal()
        arm = None if self.same_group else _die_with_parent()
        # Blocked before the program exists: a signal arriving while it starts is held, not
        # lost (or fatal to the launcher). The program starts with the mask we were given.
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)

        def in_child() -> None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
            if arm is not None:
                arm()

        argv, env = _socket_activation(argv, env)
        # The program leads its process group exactly when the launcher leads its own, as
        # it would in the launcher's place (a session leader started by a supervisor leads
        # its group; a command of a shell script does not, and may call os.setsid()).
        leader = os.getpgrp() == os.getpid()
        holder = None if self.same_group or leader else _GroupHolder()
        try:
            # preexec_fn is safe here: the launcher has no other thread. Every descriptor
            # the launcher was given (`3>file`, pass_fds, socket activation) goes to the
            # program as to a program started by the shell; the launcher's own are
            # non-inheritable and stay behind.
            self.child = subprocess.Popen(
                argv, env=env, preexec_fn=in_child, pass_fds=_inherited_fds(),  # noqa: PLW1509
                process_group=(None if self.same_group else 0 if holder is None
                               else holder.pgid))
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
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)


# -- the run -----------------------------------------------------------------------------------

class Sidecar:
    """The sidecar process of one run, started without waiting for it. Its READY line, its
    summary and, when it fails, the cause are read when the launcher needs them."""

    def __init__(self, run_dir: str, db: str, run_id: str, cfg: Config,
                 extra_args: tuple[str, ...] = ()) -> None:
        import subprocess

        self.run_dir, self.run_id, self.data_dir = run_dir, run_id, cfg.data_dir
        self.log_path = os.path.join(run_dir, "sidecar.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")
               and k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
        env["FLOWAGENT_ENABLED"] = "0"  # the sidecar is never recorded
        for name in ("FLOWAGENT_SERVICE", "FLOWAGENT_HOST"):  # what the run's row names
            if os.environ.get(name):
                env[name] = os.environ[name]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowagent.sidecar", "--run-dir", run_dir, "--db", db,
                 "--run-id", run_id, "--retention", str(cfg.retention_sessions),
                 "--max-data-size", str(cfg.max_data_size),
                 *(a for h in cfg.hooks for a in ("--hook", h)), *extra_args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                start_new_session=True)  # out of the way of every signal sent to the program
        self.started = False    # it said READY: the run's row exists in the store
        self.failure = ""       # why it failed, once known
        self._reported = False

    def check(self) -> None:
        """If the sidecar has exited on its own, say so now: the program goes on recording
        into its rings, and the user learns it now, not when a long-running program ends."""
        if not self.failure and self.proc.poll() is not None:
            self._failed(self.proc.stdout.read() if self.proc.stdout else b"")
            self.report()

    def finish(self, end: RunEnd | None = None) -> dict | None:
        """Tell the sidecar to drain and finish (close its stdin, after sending it ``end``,
        the launcher's part of the run's row, to store with its last write; the sidecar
        sets the status); its summary, or None if it failed (``failure`` says why)."""
        import json
        import subprocess

        if self.failure:
            return None
        line = json.dumps({"run": end._asdict()}).encode() + b"\n" if end else None
        try:
            out, _ = self.proc.communicate(line, timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            self._failed(out, "it did not finish within 120 s")
            return None
        self.started = out.startswith(b"READY")
        for line in reversed(out.decode(errors="replace").splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    break
        self._failed(out)
        return None

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
        rc = self.proc.returncode
        if not why and rc is not None and rc < 0:
            why = f"killed by signal {-rc}"
        if not why:  # its own last word: the exception that stopped it
            try:
                with open(self.log_path, "rb") as f:
                    lines = f.read().decode(errors="replace").strip().splitlines()
            except OSError:
                lines = []
            why = lines[-1].strip() if lines else f"exit status {rc}, no output"
        self.failure = f"the sidecar {'stopped' if self.started else 'did not start'} ({why})"


def _check_room(run_dir: str, ring_size: int) -> None:
    """Refuse to record where not even one ring fits: the cause, named before anything runs."""
    try:
        st = os.statvfs(run_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < ring_size + 4096 + (1 << 20):  # a ring, its header, room for the database
        raise StoreError(f"not enough free space for recording in {run_dir} ({_size(free)} "
                         f"free; each recorded process needs {_size(ring_size)} for its ring); "
                         "free some space, lower --ring-size or pass --data-dir on a larger "
                         "filesystem")


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n // 1024} KiB"


def _otlp_args(cfg: Config, target: Target) -> tuple[str, ...]:
    """The sidecar's OTLP options (none without an endpoint); ConfigError when the extra is
    missing, before anything starts."""
    endpoint = getattr(cfg, "otlp_endpoint", "")
    if not endpoint:
        return ()
    from .reports.export.otlp import program_name
    from .sidecar.otlp_sender import check_available

    check_available()
    service = getattr(cfg, "service", "") or program_name(target.describe())
    return ("--otlp-endpoint", endpoint, "--otlp-service", service,
            "--otlp-host", getattr(cfg, "host", "") or "")


def _prepare(cfg: Config, extra_args: tuple[str, ...] = ()) -> tuple[str, str, Sidecar]:
    """Run id, run directory and the sidecar (not waited for); StoreError if any fails."""
    try:
        run_id, run_dir = _claim_run_dir(cfg.data_dir)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {cfg.data_dir}: {exc.strerror}; "
                         "pass --data-dir with a writable location") from None
    _check_room(run_dir, cfg.ring_size)
    from .store.api import store_url

    try:
        sidecar = Sidecar(run_dir, store_url(cfg.data_dir, cfg.store), run_id, cfg, extra_args)
    except OSError as exc:
        raise StoreError(f"cannot start the flowagent sidecar: {exc}") from None
    return run_id, run_dir, sidecar


def run(cfg: Config, target: Target, cwd: str) -> int:
    """Run ``target`` under the agent; returns the program's exit status.

    The program always runs: if recording cannot start (data directory unwritable or full),
    one clear error line says so and the program runs unrecorded; if the sidecar fails, one
    line says why and where the recording waits to be stored."""
    from .service import default_service

    service = cfg.service or default_service(target.kind, target.name, target.args)
    sidecar_args = (*_otlp_args(cfg, target), "--service", service)
    try:
        run_id, run_dir, sidecar = _prepare(cfg, sidecar_args)
    except StoreError as exc:
        sys.stderr.write(f"flowagent: error: {exc}; running {target.describe()} without "
                         "recording\n")
        exec_plain(target.kind, target.name, target.args)
    # The sidecar's interpreter boots on another core while this one gets the program ready.
    from .agent.backends import choose
    from .config import to_child_env

    backend, reason = choose(cfg.backend)
    if cfg.verbose:
        sys.stderr.write(f"flowagent: backend {backend.name}: {reason}\n")
    from .agent.backends import caveat

    if caveat(backend.name):
        sys.stderr.write(f"flowagent: note: {caveat(backend.name)}\n")
    env = dict(os.environ)
    env.update(to_child_env(cfg))
    roots = [cwd] + ([_script_dir(target.path)] if target.kind == "script" else [])
    env.update(FLOWAGENT_RUN_DIR=run_dir, FLOWAGENT_RUN_ID=run_id, FLOWAGENT_PREFIX=sys.prefix,
               FLOWAGENT_ROOTS=os.pathsep.join(roots), FLOWAGENT_BACKEND=backend.name,
               PYTHONPATH=_pythonpath(bootstrap_dir(), os.environ.get("PYTHONPATH")))
    try:
        program = Supervisor(_command(target, backend.capabilities.instruments_main), env)
    except OSError as exc:
        sidecar.stop()
        raise TargetError(f"cannot start {target.describe()}: {exc.strerror}") from None
    rc = program.wait(on_other_child=sidecar.check)
    try:
        end = _run_end(target, cwd, backend.name, rc)
        summary = sidecar.finish(end)
        sidecar.report()
        if sidecar.started and not (summary or {}).get("run_row"):
            # The sidecar did not store our part of the run's row: store it ourselves.
            _finish_run(cfg, run_id, end, summary)
        if summary is not None:
            _print_summary(run_id, run_dir, summary, cfg)
        sys.stderr.flush()
    except OSError:
        pass  # stderr is gone (a closed pipe, a hung-up terminal): the exit status still counts
    except Exception as exc:  # noqa: BLE001 - the launcher's own trouble is only reported
        _say(f"flowagent: error: could not finish run {run_id} ({type(exc).__name__}: {exc}); "
             f"the program's exit status is kept\n")
    return rc


def _say(line: str) -> None:
    """One line on stderr, if there still is one."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def reserve_std_fds() -> None:
    """Standard descriptors the launcher was started without (``2>&-``) get /dev/null,
    close-on-exec: the launcher's own files and pipes then never take their numbers (where the
    program would find them open), the program still finds them closed, and the launcher's
    messages go nowhere instead of failing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                return
            if null != fd:  # a lower one is open: put it where it belongs
                os.dup2(null, fd, inheritable=False)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115


def _text(s: str) -> str:
    """A file-system string as storable text: bytes that are not UTF-8 (a directory named in
    Latin-1) are shown as \\xNN escapes instead of failing the store."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _run_end(target: Target, cwd: str, backend: str, rc: int) -> RunEnd:
    """What only the launcher knows about the run, for the sidecar to store with its last
    write (opening the store here would cost every run its schema check and a transaction
    after the program has ended); the status is the writer's to fill in."""
    import time

    from .redact import mask_argv
    from .store.api import RunEnd

    return RunEnd(tuple(mask_argv([target.describe(), *target.args])), _text(cwd), backend,
                  time.time_ns(), rc, "")


def _finish_run(cfg: Config, run_id: str, end: RunEnd, summary: dict | None) -> None:
    """What only the launcher knows about the run, into its row (the sidecar made the row),
    when the sidecar did not store it."""
    from .store.api import open_store, store_url

    status = ("sidecar-failed" if summary is None
              else "pending" if summary.get("pending") else "finished")
    try:
        store = open_store(store_url(cfg.data_dir, cfg.store), data_dir=cfg.data_dir)
        store.finish_run(run_id, end._replace(status=status))
        store.close()
        note = getattr(store, "forward_note", None)  # a shared store's spool still waiting
        if note and summary is not None:
            summary["store_note"] = note
    except StoreError as exc:
        sys.stderr.write(f"flowagent: error: could not finish run {run_id} in the store: "
                         f"{exc}\n")


def _data_dir_option(data_dir: str) -> str:
    same = os.path.abspath(data_dir) == os.path.abspath(".flowagent")
    return "" if same else f" --data-dir {os.path.relpath(data_dir)}"


# Causes a ring cannot be made for that are the program's resource limits, not the disk.
_LIMIT_FIXES = {
    os.strerror(errno.EFBIG): "the program's file size limit (ulimit -f) is below the smallest ring "
                     "(68 KiB); raise it to record",
    os.strerror(errno.ENOMEM): "the program's address-space limit (ulimit -v) leaves no room for even "
                     "the smallest ring (64 KiB); raise it to record",
}


def _unrecorded(run_dir: str) -> dict[str, int]:
    """Processes whose ring could not be made, by cause (the agent leaves an empty
    ``<pid>-<key>.ring.<ERRNO>`` marker in their place)."""
    import errno

    causes: dict[str, int] = {}
    try:
        names = os.listdir(os.path.join(run_dir, "rings"))
    except OSError:
        return causes
    for name in names:
        base, _, code = name.rpartition(".")
        if base.endswith(".ring") and code.startswith("E"):
            why = os.strerror(getattr(errno, code, errno.EIO))
            causes[why] = causes.get(why, 0) + 1
    return causes


def _preimported(run_dir: str) -> list[str]:
    """Modules the include globs select that a process had imported before its agent
    started (listed by the agent in ``rings/<pid>.preimported``)."""
    found: set[str] = set()
    rings = os.path.join(run_dir, "rings")
    try:
        names = [n for n in os.listdir(rings) if n.endswith(".preimported")]
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(rings, name), encoding="utf-8") as f:
                found.update(line.strip() for line in f if line.strip())
        except OSError:
            continue
    return sorted(found)


def _sample_rate_note(run_dir: str, configured: float) -> str:
    """The sample rate in force at the end of the run: ``flowagent control`` may have changed
    the configured one while the program ran."""
    from .sidecar import control

    live = control.read(run_dir).get("sample_rate")
    if isinstance(live, (int, float)) and live != configured:
        return (f"sample rate {live:g} at the end of the run, set with flowagent control; "
                f"{configured:g} at its start")
    return f"sample rate {configured:g}"


def _print_summary(run_id: str, run_dir: str, s: dict, cfg: Config) -> None:
    w = sys.stderr.write
    rel = os.path.relpath(cfg.data_dir)
    dd = _data_dir_option(cfg.data_dir)
    w(f"flowagent: run {run_id}: {s['sessions']} sessions, {s['calls']} calls, "
      f"{s['errors']} errors, {s['dropped_events']} dropped events "
      f"({s['processes']} process{'es' if s['processes'] != 1 else ''})\n")
    if s["incomplete_sessions"]:
        w(f"flowagent: {s['incomplete_sessions']} sessions were still open when their process "
          "ended; stored as incomplete\n")
    if s["dropped_events"]:
        w(f"flowagent: {s['dropped_events']} events were dropped because a ring was full; "
          f"raise --ring-size (now {cfg.ring_size // 1024} KiB) to keep them\n")
    if s.get("sampled_out"):
        w(f"flowagent: {s['sampled_out']} sessions were left out by sampling "
          f"({_sample_rate_note(run_dir, cfg.sample_rate)})\n")
    if s.get("hook_errors"):
        w(f"flowagent: {s['hook_errors']} hook failures; first: {s['hook_error']}\n")
    if s.get("otlp_endpoint"):
        w(f"flowagent: OpenTelemetry: {s.get('otlp_sessions', 0)} sessions "
          f"({s.get('otlp_spans', 0)} spans) sent to {s['otlp_endpoint']}")
        if s.get("otlp_undelivered"):
            w(f"; {s['otlp_undelivered']} sessions could not be delivered"
              + (f" (first failure: {s['otlp_error']})" if s.get("otlp_error") else ""))
        w("\n")
    unrecorded = _unrecorded(run_dir)
    for why, n in unrecorded.items():
        fix = _LIMIT_FIXES.get(why, "free some space, lower --ring-size or pass --data-dir "
                               "on a larger filesystem")
        w(f"flowagent: {n} process{'es were' if n != 1 else ' was'} not recorded: no "
          f"ring could be made in {run_dir}/rings ({why}); {fix}\n")
    pending = s.get("pending") or []
    if pending:
        shown = ", ".join(f"pid {p['pid']}" + (f" ({' '.join(p['argv'])[:60]})" if p["argv"]
                                                else "") for p in pending[:3])
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        w(f"flowagent: {len(pending)} process{'es' if len(pending) != 1 else ''} of this run "
          f"{'are' if len(pending) != 1 else 'is'} still running: {shown}{more}; what "
          f"{'they record' if len(pending) != 1 else 'it records'} from now on waits in "
          f"{run_dir}/rings: store it with 'flowagent sidecar --resume {run_id}{dd}' once "
          f"{'they have' if len(pending) != 1 else 'it has'} ended\n")
    if s.get("pruned_runs"):
        n = s["pruned_runs"]
        w(f"flowagent: the data directory was over its {_size(cfg.max_data_size)} limit: "
          f"pruned the {n} oldest run{'s' if n != 1 else ''} ({_size(s['pruned_bytes'])}); "
          "raise --max-data-size (or max_data_size in the config) to keep more\n")
    preimported = _preimported(run_dir)
    if preimported:
        names = ", ".join(preimported[:8]) + (f" and {len(preimported) - 8} more"
                                              if len(preimported) > 8 else "")
        one = len(preimported) == 1
        w(f"flowagent: {names} {'matches' if one else 'match'} --include but "
          f"{'was' if one else 'were'} imported before the agent could instrument "
          f"{'it' if one else 'them'} (the interpreter or the agent loads "
          f"{'it' if one else 'them'} at startup), so nothing of {'it' if one else 'them'} "
          f"was recorded; record {'it' if one else 'them'} with --backend profile (or "
          f"--backend monitor on Python 3.12+), which also see modules imported earlier\n")
    if s["processes"] == 0 and not unrecorded and not pending and not preimported:
        w("flowagent: no Python process of this run was recorded (is the target a Python "
          "program run by this interpreter?)\n")
    if s.get("store_note"):
        w(f"flowagent: {s['store_note']}\n")
    where = f"{rel}/flowagent.db"
    if cfg.store and "://" in cfg.store and not cfg.store.startswith(("sqlite:", "file:")):
        from .store.pgconn import redact

        where = redact(cfg.store)
        dd = f" --store {where}"
    w(f"flowagent: data in {where}; look at it with 'flowagent sessions{dd}', "
      f"'flowagent trace SESSION_ID{dd}', 'flowagent export --format dot{dd}'\n")


def exit_like(rc: int) -> None:
    """Exit with the program's status; if a signal killed it, die by the same signal."""
    if rc < 0:
        sys.stdout.flush()
        sys.stderr.flush()
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-rc, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (-rc,))
        os.kill(os.getpid(), -rc)
        import time

        time.sleep(1)
        os._exit(128 - rc)
    sys.exit(rc)
