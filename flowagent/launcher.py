"""``flowagent run``: start the sidecar, run the program under the agent, report, pass its exit
status through.

The program must not be able to tell it is being launched: it gets its own stdin/stdout/
stderr, ``sys.argv`` and ``sys.path[0]`` as under ``python``, and the launcher exits with the
program's exit status, or dies by the same signal that killed it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config, to_child_env
from .errors import StoreError, TargetError
from .store.sqlite import SQLiteStore, db_path


@dataclass(frozen=True)
class Target:
    kind: str          # "script" | "module" | "program"
    name: str          # script path, module name, or program as typed
    args: tuple[str, ...]
    path: str = ""     # resolved script/program path

    def describe(self) -> str:
        return {"script": self.name, "module": f"-m {self.name}",
                "program": f"-- {self.name}"}[self.kind]


def bootstrap_dir() -> str:
    """The directory holding our ``sitecustomize.py`` (checkout or installed copy)."""
    pkg = Path(__file__).resolve().parent
    for candidate in (pkg.parent / "sitecustomize", pkg / "_bootstrap"):
        if (candidate / "sitecustomize.py").is_file():
            return str(candidate)
    raise TargetError("flowagent's bootstrap (sitecustomize.py) is missing from the "
                      "installation; reinstall flowagent")


def resolve_target(kind: str, name: str, args: list[str], cwd: str) -> Target:
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
        path = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK)
                                                              else None)
        if path is None:
            raise TargetError(f"program {name!r} not found on PATH; install it or give its path")
        return Target("program", name, tuple(args), path)
    path = os.path.join(cwd, name)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "__main__.py")):
            return Target("script", name, tuple(args), path)
        raise TargetError(f"{name!r} is a directory without __main__.py; give a script "
                          "(app.py), a module (-m pkg.mod) or a program (-- cmd)")
    if not os.path.isfile(path):
        hint = (f"; to run the program {name!r} from PATH use 'flowagent run -- {name} ...'"
                if shutil.which(name) else "")
        raise TargetError(f"no such script {name!r}{hint}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\0" in head:
        raise TargetError(f"{name!r} is not a Python program (it looks binary); run programs "
                          f"with 'flowagent run -- {name}'")
    return Target("script", name, tuple(args), path)


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + secrets.token_hex(2)


def _pythonpath(boot: str, current: str | None) -> str:
    parts = [boot] + [p for p in (current or "").split(os.pathsep) if p and p != boot]
    return os.pathsep.join(parts)


def _command(target: Target, backend: str) -> list[str]:
    if target.kind == "module":
        return [sys.executable, "-m", target.name, *target.args]
    if target.kind == "program":
        args = list(target.args)
        if (backend == "wrap" and re.fullmatch(r"python[0-9.]*", os.path.basename(target.name))
                and args and args[0].endswith(".py") and os.path.isfile(args[0])
                and os.path.realpath(target.path) == os.path.realpath(sys.executable)):
            # `-- python app.py`: the same as `flowagent run app.py` (so __main__ is recorded).
            return [sys.executable, "-m", "flowagent.agent.runmain", *args]
        return [target.path, *args]
    if backend == "wrap" and not os.path.isdir(target.path):
        # python script.py bypasses import hooks; the shim rebuilds __main__ instrumented.
        return [sys.executable, "-m", "flowagent.agent.runmain", target.name, *target.args]
    return [sys.executable, target.name, *target.args]


def _forward(child: subprocess.Popen) -> None:
    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and _terminal_sent_it():
            return  # ^C in a terminal reaches the whole foreground group, the child included
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _terminal_sent_it() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _start_sidecar(run_dir: str, db: str, run_id: str, cfg: Config) -> subprocess.Popen:
    log = open(os.path.join(run_dir, "sidecar.log"), "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    env["FLOWAGENT_ENABLED"] = "0"  # the sidecar is never recorded
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowagent.sidecar", "--run-dir", run_dir, "--db", db,
         "--run-id", run_id, "--retention", str(cfg.retention_sessions),
         *(a for h in cfg.hooks for a in ("--hook", h))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        env=env, start_new_session=True)
    log.close()
    line = proc.stdout.readline() if proc.stdout else b""
    if not line.startswith(b"READY"):
        proc.kill()
        tail = Path(run_dir, "sidecar.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise StoreError(f"the flowagent sidecar did not start ({' '.join(tail) or 'no output'});"
                         f" see {run_dir}/sidecar.log")
    return proc


def _run_plain(target: Target) -> int:
    return subprocess.call([sys.executable if target.kind != "program" else target.path,
                            *_plain_args(target)])


def _prepare(cfg: Config, target: Target, cwd: str, backend_name: str
             ) -> tuple[str, str, subprocess.Popen]:
    """Data directory, run directory, sidecar and run row; StoreError if any fails."""
    data_dir = cfg.data_dir
    run_id = _new_run_id()
    run_dir = os.path.join(data_dir, "runs", run_id)
    try:
        os.makedirs(os.path.join(run_dir, "rings"), exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}; pass "
                         "--data-dir with a writable location") from None
    db = db_path(data_dir)
    sidecar = _start_sidecar(run_dir, db, run_id, cfg)
    try:
        store = SQLiteStore(db)
        with store.transaction():
            store.db.execute("UPDATE runs SET argv=?, cwd=?, backend=? WHERE run_id=?",
                             (json.dumps([target.describe(), *target.args]), cwd,
                              backend_name, run_id))
        store.close()
    except (StoreError, sqlite3.Error) as exc:
        sidecar.kill()
        raise StoreError(f"cannot write to {db}: {exc}") from None
    return run_id, run_dir, sidecar


def run(cfg: Config, target: Target, cwd: str) -> int:
    """Run ``target`` under the agent; returns the program's exit status.

    The program always runs: if recording cannot start (data directory unwritable or full,
    sidecar failing), one clear error line says so and the program runs unrecorded."""
    from .agent.backends import choose

    if not cfg.enabled:
        # The production switch: the program runs as if flowagent were not there at all.
        return _run_plain(target)
    backend, reason = choose(cfg.backend)
    if cfg.verbose:
        sys.stderr.write(f"flowagent: backend {backend.name}: {reason}\n")
    try:
        run_id, run_dir, sidecar = _prepare(cfg, target, cwd, backend.name)
    except StoreError as exc:
        sys.stderr.write(f"flowagent: error: {exc}; running {target.describe()} without "
                         "recording\n")
        return _run_plain(target)
    env = dict(os.environ)
    env.update(to_child_env(cfg))
    roots = [cwd] + ([os.path.dirname(os.path.realpath(target.path))]
                     if target.kind == "script" else [])
    env.update(FLOWAGENT_RUN_DIR=run_dir, FLOWAGENT_RUN_ID=run_id, FLOWAGENT_PREFIX=sys.prefix,
               FLOWAGENT_ROOTS=os.pathsep.join(roots), FLOWAGENT_BACKEND=backend.name,
               PYTHONPATH=_pythonpath(bootstrap_dir(), os.environ.get("PYTHONPATH")))
    started = time.time_ns()
    try:
        child = subprocess.Popen(_command(target, backend.name), env=env)
    except OSError as exc:
        _stop_sidecar(sidecar)
        raise TargetError(f"cannot start {target.describe()}: {exc.strerror}") from None
    _forward(child)
    rc = child.wait()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    summary = _stop_sidecar(sidecar)
    try:
        store = SQLiteStore(db_path(cfg.data_dir))
        with store.transaction():
            store.db.execute("UPDATE runs SET ended_ns=?, exit_code=?, status=? WHERE run_id=?",
                             (time.time_ns(), rc, "finished" if summary else "sidecar-failed",
                              run_id))
        store.close()
    except (StoreError, sqlite3.Error) as exc:
        sys.stderr.write(f"flowagent: error: could not finish run {run_id} in the store: "
                         f"{exc}\n")
    _print_summary(run_id, cfg.data_dir, summary, started, cfg)
    return rc


def _plain_args(target: Target) -> list[str]:
    if target.kind == "module":
        return ["-m", target.name, *target.args]
    if target.kind == "program":
        return list(target.args)
    return [target.name, *target.args]


def _stop_sidecar(sidecar: subprocess.Popen) -> dict | None:
    try:
        out, _ = sidecar.communicate(timeout=120)  # closes its stdin: "drain and finish"
    except subprocess.TimeoutExpired:
        sidecar.kill()
        return None
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _print_summary(run_id: str, data_dir: str, s: dict | None, started: int, cfg: Config) -> None:
    w = sys.stderr.write
    if s is None:
        w(f"flowagent: run {run_id}: the sidecar failed; what it stored is in "
          f"{db_path(data_dir)} (log: {data_dir}/runs/{run_id}/sidecar.log)\n")
        return
    rel = os.path.relpath(data_dir)
    dd = "" if os.path.abspath(data_dir) == os.path.abspath(".flowagent") else f" --data-dir {rel}"
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
          f"(sample rate {cfg.sample_rate:g})\n")
    if s.get("hook_errors"):
        w(f"flowagent: {s['hook_errors']} hook failures; first: {s['hook_error']}\n")
    if s["processes"] == 0:
        w("flowagent: no Python process of this run was recorded (is the target a Python "
          "program run by this interpreter?)\n")
    w(f"flowagent: data in {rel}/flowagent.db; look at it with 'flowagent sessions{dd}', "
      f"'flowagent trace SESSION_ID{dd}', 'flowagent export --format dot{dd}'\n")


def exit_like(rc: int) -> None:
    """Exit with the program's status; if a signal killed it, die by the same signal."""
    if rc < 0:
        sys.stdout.flush()
        sys.stderr.flush()
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
        time.sleep(1)
        os._exit(128 - rc)
    sys.exit(rc)
