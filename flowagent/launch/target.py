"""What to run and how: the target's resolution, the command line the program starts with, and
becoming the plain program when recording is off.
"""

from __future__ import annotations

import os
import sys

from ..errors import TargetError

TYPE_CHECKING = False  # importing typing costs ~3 ms of every run's start-up
if TYPE_CHECKING:
    import signal
    from collections.abc import Sequence
    from typing import NoReturn
else:
    try:  # the C module under `signal`: what exec_plain needs, without its enums (~2 ms)
        import _signal as signal
    except ImportError:  # an interpreter without it
        import signal



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
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # flowagent/
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
