"""Plain-versus-agent scenarios for what happens around the recorded process: what the
program inherits through the launcher (descriptors, session and process group, signals,
resource limits, a troubled working directory or standard stream), processes that outlive
the run, rings and the data directory's size, command lines in the store, and a damaged
store. Run by ``test_plain_vs_agent.py``.

Most of these exercise the launcher and the sidecar, which are the same whatever records
inside the program: they run on ``wrap`` only. Those where the recording process itself is
involved (ring allocation under limits, forks, pools, daemons) run on every backend and both
twins.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import AgentRun, Scenario
from helpers import _clean_env, flowagent_cmd

SCENARIOS: list[Scenario] = []
LAUNCHER_ONLY = ("wrap",)
PY = shlex.quote(sys.executable)


def scenario(name: str, prog: str, **kw: object) -> Scenario:
    klass = name.split("/", 1)[0]
    files = dict(kw.pop("files", {}))  # type: ignore[arg-type]
    files["prog.py"] = prog
    kw.setdefault("backends", LAUNCHER_ONLY)
    s = Scenario(name=name, klass=klass, files=files, **kw)  # type: ignore[arg-type]
    SCENARIOS.append(s)
    return s


# -- checks ------------------------------------------------------------------------------------

def _db(run: AgentRun) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{run.data_dir / 'flowagent.db'}?mode=ro", uri=True)


def recorded(**at_least: int) -> Callable[[AgentRun], None]:
    """At least this many calls of each named function stored; nothing lost uncounted."""

    def check(run: AgentRun) -> None:
        calls = run.function_calls()
        for fn, n in at_least.items():
            assert calls.get(fn, 0) >= n, f"{fn}: {calls.get(fn, 0)} calls recorded, want {n}"
        acc = run.accounting()
        assert acc is not None, "nothing stored"
        assert acc["produced"] == acc["stored"] + acc["dropped"], acc

    return check


def no_rings_left(run: AgentRun) -> None:
    """Every ring of the run was removed once drained (only markers or nothing remain)."""
    left = list(run.data_dir.glob("runs/*/rings/*.ring"))
    assert not left, f"{len(left)} drained rings left behind: {left[:3]}"


def both(*checks: Callable[[AgentRun], None]) -> Callable[[AgentRun], None]:
    def check(run: AgentRun) -> None:
        for c in checks:
            c(run)
    return check


def summary_says(*words: str) -> Callable[[AgentRun], None]:
    def check(run: AgentRun) -> None:
        text = "\n".join(run.summary)
        for w in words:
            assert w in text, f"{w!r} not in the launcher's lines:\n{text}"
    return check


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _cli(run: AgentRun, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(flowagent_cmd(*args, "--data-dir", str(run.data_dir)), cwd=run.cwd,
                          env=_clean_env({}), capture_output=True, timeout=120)


def _without_fork_warning(data: bytes) -> bytes:
    """Python 3.12+ warns at fork() when the process has another OS thread. The agent stops
    its flusher for a fork, but the thread may not have left the OS yet when the warning
    counts threads: an agent-side race (guarded by test_concurrency's fork test), not what
    these scenarios look at (descriptors, rings, daemons)."""
    import re

    return re.sub(rb"[^\n]*DeprecationWarning: This process \(pid=\d+\) is multi-threaded, "
                  rb"use of fork\(\) may lead to deadlocks in the child\.\n[^\n]*\n", b"", data)


def _stored_or_waiting(run: AgentRun, fn: str, n: int) -> None:
    """Every call stored, or the launcher said what was not and where it waits."""
    try:
        if run.function_calls().get(fn, 0) >= n:
            return
    except sqlite3.Error:
        pass  # the sidecar could not even make its tables
    text = "\n".join(run.summary)
    assert "--resume" in text or "not recorded" in text, text


# == inherit: descriptors ======================================================================

_FD_PROG = """
    import os
    def emit(fd, text): os.write(fd, text.encode())
    emit({fd}, "written to fd {fd}\\n")
    print("inheritable", os.get_inheritable({fd}))
"""
for fd in (3, 4, 9):
    scenario(f"inherit/fd{fd}-out", _FD_PROG.format(fd=fd),
             shell=f"{{cmd}} {fd}>out.txt; echo rc=$?; cat out.txt")

scenario("inherit/fd3-in", """
    import os
    print("read from fd 3:", os.read(3, 100).decode().strip())
""", shell="echo from-the-shell > in.txt; {cmd} 3<in.txt")

scenario("inherit/fd3-is-stdout", """
    import os, sys
    os.write(3, b"via fd 3\\n")
    print("via stdout")
""", shell="{cmd} 3>&1")

scenario("inherit/fd-many", """
    import os
    for fd in (3, 5, 7, 11):
        os.write(fd, f"fd {fd}\\n".encode())
    print("open fds above 2:", sorted(int(f) for f in os.listdir("/proc/self/fd") if int(f) > 2
                                      and os.get_inheritable(int(f))))
""", shell="{cmd} 3>a 5>b 7>c 11>d; cat a b c d")

scenario("inherit/fd-closed-stays-closed", """
    import os
    try:
        os.fstat(3)
        print("fd 3 open")
    except OSError as e:
        print("fd 3:", e.strerror)
""", shell="{cmd} 3>&-")

scenario("inherit/pass-fds-from-parent", """
    import os, subprocess, sys
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "child.py", str(w)], pass_fds=(w,))
    os.close(w)
    print("child says:", os.read(r, 100).decode().strip())
    print("child exit", child.wait())
""", files={"child.py": """
    import os, sys
    def say(fd): os.write(fd, b"hello through pass_fds")
    say(int(sys.argv[1]))
"""})

_ACTIVATE = """
    import os, socket, sys
    # As systemd does: the listening socket on fd 3, LISTEN_PID = the pid that execs.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    os.dup2(s.fileno(), 3)
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
    os.execvp(sys.argv[1], sys.argv[1:])
"""
scenario("inherit/socket-activation", """
    import os, socket
    def listen_fds():
        if os.environ.get("LISTEN_PID") != str(os.getpid()):
            return 0
        return int(os.environ.get("LISTEN_FDS", "0"))
    n = listen_fds()
    print("activated sockets:", n, os.environ.get("LISTEN_FDNAMES"))
    if n:
        s = socket.socket(fileno=3)
        print("listening:", s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1)
""", files={"activate.py": _ACTIVATE}, shell=f"{PY} activate.py {{cmd}}",
         check=recorded(listen_fds=1), backends=None)

# == inherit: session and process group ========================================================

scenario("inherit/setsid", """
    import os
    def detach():
        os.setsid()
        return os.getsid(0) == os.getpid()
    try:
        print("own session:", detach())
    except OSError as e:
        print("setsid failed:", e.strerror)
""", check=recorded(detach=1), backends=None)

scenario("inherit/setsid-under-a-shell", """
    import os
    def detach():
        os.setsid()
        return os.getsid(0) == os.getpid()
    try:
        print("own session:", detach())
    except OSError as e:
        print("setsid failed:", e.strerror)
""", shell="{cmd}; echo rc=$?", check=recorded(detach=1), backends=None)

scenario("inherit/setpgid-under-a-shell", """
    import os
    os.setpgid(0, 0)
    print("group leader:", os.getpgrp() == os.getpid())
""", shell="{cmd}; echo rc=$?")

_LEADS = """
    import os
    print("leads its group:", os.getpgrp() == os.getpid())
    print("leads its session:", os.getsid(0) == os.getpid())
"""
scenario("inherit/group-leader-as-under-a-supervisor", _LEADS.replace(
    'print("leads its session:", os.getsid(0) == os.getpid())', ""))
scenario("inherit/group-member-as-under-a-shell", _LEADS, shell="{cmd}; echo rc=$?")
scenario("inherit/session-leader", _LEADS, limitation=(
    "a program started as a session leader (start_new_session, setsid, a supervisor) leads "
    "its session plainly; under flowagent run the launcher leads it and the program is its "
    "child in the same session (its group and everything else are as plainly)"))

scenario("inherit/double-fork-daemon", """
    import os, time
    def daemon_work(path):
        with open(path + ".tmp", "w") as f: f.write("daemon ran")
        os.rename(path + ".tmp", path)  # whole when it appears
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            daemon_work("daemon.txt")
            os._exit(0)
        os._exit(0)
    os.wait()
    while not os.path.exists("daemon.txt"): time.sleep(0.01)
    print(open("daemon.txt").read())
""", backends=None)

# == inherit: signals ==========================================================================

_HANDLED = """
    import os, signal, sys, time
    got = []
    def on_signal(n, frame): got.append(n)
    signal.signal({sig}, on_signal)
    open("ready", "w").close()
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.005)
    print("handled:", [signal.Signals(n).name if n in signal.Signals._value2member_map_
                       else n for n in got])
"""
# The shell's own notice of a job killed by a signal is printed whenever it reaps the job
# (timing): the subshell's stderr is /dev/null, the program keeps the real one.
_SEND = ("( {cmd} 2>&3 & p=$!; while [ ! -e ready ]; do sleep 0.01; done; kill -{name} $p; "
         "wait $p; echo rc=$? ) 3>&2 2>/dev/null")
for name in ("ALRM", "WINCH", "PIPE", "USR1", "USR2", "HUP", "TERM", "INT", "QUIT", "URG",
             "IO", "VTALRM", "PROF", "PWR", "CONT", "XCPU"):
    scenario(f"inherit/signal-{name.lower()}-handled", _HANDLED.format(sig=f"signal.SIG{name}"),
             shell=_SEND.format(cmd="{cmd}", name=name),
             backends=None if name in ("ALRM", "USR1") else LAUNCHER_ONLY)
for n in (0, 5, 30):
    scenario(f"inherit/signal-rtmin+{n}-handled",
             _HANDLED.format(sig=f"signal.SIGRTMIN + {n}"),
             shell=_SEND.format(cmd="{cmd}", name=str(signal.SIGRTMIN + n)))

_UNHANDLED = """
    import os, time
    def spin():
        open("ready", "w").close()
        time.sleep(30)
    spin()
    print("not reached")
"""
for name in ("USR1", "ALRM", "HUP", "TERM", "USR2"):
    scenario(f"inherit/signal-{name.lower()}-default-kills", _UNHANDLED,
             shell=_SEND.format(cmd="{cmd}", name=name))

scenario("inherit/signal-winch-default-ignored", """
    import os, time
    open("ready", "w").close()
    while not os.path.exists("go"): time.sleep(0.01)
    print("still running after SIGWINCH")
""", shell="{cmd} & p=$!; while [ ! -e ready ]; do sleep 0.01; done; kill -WINCH $p; "
           "sleep 0.2; touch go; wait $p; echo rc=$?")

scenario("inherit/ignored-hup-stays-ignored", """
    import signal, os, time
    print("SIGHUP:", signal.getsignal(signal.SIGHUP))
    open("ready", "w").close()
    time.sleep(0.3)
    print("survived SIGHUP")
""", shell="trap '' HUP; {cmd} & p=$!; while [ ! -e ready ]; do sleep 0.01; done; "
           "kill -HUP $p; wait $p; echo rc=$?")

scenario("inherit/background-job-sigint-ignored", """
    import signal
    print("SIGINT:", signal.getsignal(signal.SIGINT))
    print("SIGQUIT:", signal.getsignal(signal.SIGQUIT))
""", shell="{cmd} & wait $!")

scenario("inherit/blocked-signal-mask", """
    import signal
    print("blocked:", sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
""", files={"block.py": """
    import os, signal, sys
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    os.execvp(sys.argv[1], sys.argv[1:])
"""}, shell=f"{PY} block.py {{cmd}}")

scenario("inherit/self-kill-usr2", """
    import os, signal
    def die():
        os.kill(os.getpid(), signal.SIGUSR2)
    print("before", flush=True)
    die()
""")

scenario("inherit/exit-255", """
    import sys
    print("bye")
    sys.exit(255)
""")

# == inherit: the launcher's own trouble ======================================================

_TROUBLE = """
    import os, sys
    def f(x): return x + 1
    print("result", f(1))
    print("cwd bytes end", os.getcwdb()[-3:])
    if sys.stderr is not None:
        print("to stderr", file=sys.stderr)
    sys.exit(3)
"""
# The program in a directory whose name is not UTF-8 is recorded like any other (every
# backend: the main script's path, its module's file name and the ring's info carry it).
scenario("inherit/cwd-not-utf8", _TROUBLE,
         shell="d=$(printf 'dir\\377\\376'); mkdir -p \"$d\"; cp prog.py \"$d\"/; cd \"$d\"; "
               "{cmd}; echo rc=$?", check=recorded(f=1), backends=None)
scenario("inherit/cwd-latin1-name", _TROUBLE,
         shell="d=$(printf 'caf\\351'); mkdir -p \"$d\"; cp prog.py \"$d\"/; cd \"$d\"; "
               "{cmd}; echo rc=$?", check=recorded(f=1), backends=None)
scenario("inherit/cwd-not-utf8-module", _TROUBLE.replace(
             "def f(x): return x + 1", "from helper import f"),
         files={"helper.py": "def f(x): return x + 1\n"},
         shell="d=$(printf 'mod\\377'); mkdir -p \"$d\"; cp prog.py helper.py \"$d\"/; "
               "cd \"$d\"; {cmd}; echo rc=$?", check=recorded(f=1), backends=None)
scenario("inherit/cwd-deleted", _TROUBLE,
         shell="mkdir gone; cd gone; rmdir ../gone; {cmd}; echo rc=$?",
         normalize=lambda b: b.replace(b"[Errno 2]", b"").replace(b"(null)", b""))
scenario("inherit/stderr-closed", _TROUBLE.replace("os.getcwdb()[-3:]", "'-'"),
         shell="{cmd} 2>&-; echo rc=$?")
scenario("inherit/stdout-closed", _TROUBLE.replace("os.getcwdb()[-3:]", "'-'"),
         shell="{cmd} >&-; echo rc=$? > rc.txt; cat rc.txt")
scenario("inherit/stdin-closed", """
    import sys
    print("stdin:", sys.stdin)
""", shell="{cmd} <&-")
scenario("inherit/umask", """
    import os
    print("umask", oct(os.umask(0)))
""", shell="umask 027; {cmd}")
scenario("inherit/nofile-limit", """
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = [open("prog.py") for _ in range(soft - 12)]
    print("opened", len(files), "of", soft)
""", shell="ulimit -n 64; {cmd}")

# == resources: limits, rings, the data directory ============================================

_FSIZE = """
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # as a C program would have it
    def f(x): return {"x": x}
    print(sum(f(i)["x"] for i in range(2000)))
"""
# `ulimit -S -f`: the soft limit only (the sidecar raises its own to the hard limit); a
# hard limit binds the sidecar's database too: what it cannot store is reported and waits.
scenario("resources/fsize-soft-limit-below-ring", _FSIZE,
         shell="ulimit -S -f 2048; {cmd}; echo rc=$?", check=recorded(f=2000), backends=None)
scenario("resources/fsize-soft-limit-big-ring", _FSIZE,
         shell="ulimit -S -f 4096; {cmd}; echo rc=$?", flowagent_args=("--ring-size", "64MiB"),
         check=recorded(f=2000))
scenario("resources/fsize-hard-limit-below-ring", _FSIZE, shell="ulimit -f 2048; {cmd}; "
         "echo rc=$?", check=lambda run: _stored_or_waiting(run, "f", 2000), backends=None)
scenario("resources/fsize-limit-tiny", _FSIZE, shell="ulimit -f 40; {cmd}; echo rc=$?",
         check=lambda run: _stored_or_waiting(run, "f", 2000), backends=None)
scenario("resources/address-space-limit", """
    def grow(n): return bytearray(n)
    blocks = [grow(1 << 20) for _ in range(150)]
    print("allocated", len(blocks), "MiB")
""", shell="ulimit -v 600000; {cmd}; echo rc=$?", check=recorded(grow=150), backends=None)

scenario("resources/pool-maxtasksperchild", """
    from multiprocessing import Pool
    def work(x): return x * 2
    if __name__ == "__main__":
        with Pool(2, maxtasksperchild=1) as pool:
            print(sum(pool.map(work, range(30), chunksize=1)))
""", check=both(recorded(work=30), no_rings_left), backends=None, timeout=120)

scenario("resources/forked-children", """
    import os
    def child_work(i): return i * i
    pids = []
    for i in range(8):
        pid = os.fork()
        if pid == 0:
            child_work(i)
            os._exit(0)
        pids.append(pid)
    print("children", sum(os.waitpid(p, 0)[1] == 0 for p in pids))
""", check=both(recorded(child_work=8), no_rings_left), backends=None,
         normalize=_without_fork_warning)

scenario("resources/subprocess-children", """
    import subprocess, sys
    def run(i):
        return subprocess.run([sys.executable, "child.py", str(i)], check=True,
                              capture_output=True).stdout.decode().strip()
    print([run(i) for i in range(4)])
""", files={"child.py": """
    import sys
    def square(n): return n * n
    print(square(int(sys.argv[1])))
"""}, check=both(recorded(square=4), no_rings_left))

scenario("resources/data-limit-option", """
    def f(x): return x
    print(sum(f(i) for i in range(500)))
""", flowagent_args=("--max-data-size", "1MiB"), check=recorded(f=500))

# == loss: processes that outlive the run =====================================================

_DAEMON = """
    import os, sys, time
    def tick(i): return i + 1
    def before(): return "before"
    before()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2): os.dup2(null, fd)
            deadline = time.monotonic() + 60
            while not os.path.exists("go") and time.monotonic() < deadline:
                time.sleep(0.01)
            for i in range(5): tick(i)
            open("daemon-done", "w").close()
            os._exit(0)
        os._exit(0)
    os.wait()
    print("parent exits")
"""


def _daemon_collected(run: AgentRun) -> None:
    """The summary names the daemon and how to collect it; --resume after it ended stores
    what it recorded after the run."""
    text = "\n".join(run.summary)
    assert "still running" in text and "sidecar --resume" in text, text
    assert run.function_calls().get("tick", 0) == 0
    (run.cwd / "go").touch()
    _wait_for(run.cwd / "daemon-done")
    run_id = json.loads(_cli(run, "runs", "--json").stdout)[0]["run_id"]
    status = {r["run_id"]: r["status"] for r in json.loads(_cli(run, "runs", "--json").stdout)}
    assert status[run_id] == "pending", status
    deadline = time.monotonic() + 30
    while True:  # the daemon's at-exit flush lands just before (or after) its marker file
        proc = _cli(run, "sidecar", "--resume", run_id)
        assert proc.returncode == 0, proc.stderr
        if run.function_calls().get("tick", 0) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert run.function_calls().get("tick", 0) == 5, run.function_calls()
    assert run.function_calls().get("before", 0) == 1
    runs = json.loads(_cli(run, "runs", "--json").stdout)
    assert runs[0]["status"] == "finished", runs[0]
    no_rings_left(run)


scenario("loss/daemon-outlives-the-run", _DAEMON, check=_daemon_collected,
         normalize=_without_fork_warning,
         setup=lambda root: (root / "go").touch() if "plain-runs" in str(root) else None,
         backends=None)


def _sidecar_gone(run: AgentRun) -> None:
    """No process of this run (sidecar included) survives the launcher's SIGKILL."""
    deadline = time.monotonic() + 30
    marker = str(run.data_dir).encode()
    while True:
        alive = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker in f.read():
                        alive.append(int(pid))
            except OSError:
                pass
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"processes of the run still alive after the launcher's death: {alive}"


scenario("loss/launcher-killed-sidecar-ends", """
    import time
    def wait():
        open("ready", "w").close()
        time.sleep(30)
    print("started", flush=True)
    wait()
""", shell="( {cmd} 2>&3 & p=$!; while [ ! -e ready ]; do sleep 0.01; done; kill -KILL $p; "
           # the shell's own "Killed" notice (printed whenever it reaps the job) is not the
           # program's output: the subshell's stderr is /dev/null, the program's is not
           "wait $p; echo rc=$? ) 3>&2 2>/dev/null", check=_sidecar_gone)

# == request-data: command lines in the store ================================================


def _argv_stored(secret: bytes, *, kept: tuple[str, ...] = (),
                 child: bool = False) -> Callable[[AgentRun], None]:
    def check(run: AgentRun) -> None:
        db = _db(run)
        try:
            runs = [json.loads(r[0]) for r in db.execute("SELECT argv FROM runs")]
            procs = [json.loads(r[0]).get("argv", []) for r in
                     db.execute("SELECT info FROM processes")]
        finally:
            db.close()
        stored = json.dumps([runs, procs])
        assert "***" in stored, stored
        for word in kept:
            assert word in stored, (word, stored)
        if child:
            assert any("child.py" in " ".join(a) and "***" in a for a in procs), procs
        for path in run.data_dir.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), f"{secret!r} stored in {path}"

    return check


_ARGS = """
    import sys
    def main(argv): return len(argv)
    print("arguments:", main(sys.argv[1:]))
"""
scenario("request-data/argv-password-option", _ARGS,
         args=("--user", "bob", "--password", "hunter2"),
         check=_argv_stored(b"hunter2", kept=("bob", "--password")))
scenario("request-data/argv-token-equals", _ARGS, args=("--api-key=sk-12345abc", "run"),
         check=_argv_stored(b"sk-12345abc", kept=("--api-key", "run")))
scenario("request-data/argv-url-password", _ARGS, args=("postgres://app:s3cr3tpw@db/app",),
         check=_argv_stored(b"s3cr3tpw", kept=("postgres://app:",)))
scenario("request-data/argv-env-assignment", _ARGS, args=("DB_PASSWORD=pa55word", "x"),
         check=_argv_stored(b"pa55word", kept=("DB_PASSWORD=",)))
scenario("request-data/child-argv-masked", """
    import subprocess, sys
    def spawn():
        return subprocess.run([sys.executable, "child.py", "--auth-token", "tok-98765",
                               "--name", "worker"], check=True).returncode
    print("child exit", spawn())
""", files={"child.py": """
    def child(): return 1
    child()
"""}, check=_argv_stored(b"tok-98765", kept=("worker",), child=True))

# == store: a damaged or odd database =======================================================

_STORED = """
    def f(x): return x + 1
    print("result", sum(f(i) for i in range(100)))
"""
_GARBAGE = b"this is not a database " * 200


def _data_dir(root: Path) -> Path:
    """The agent run's data directory is the work directory's sibling (harness layout)."""
    d = root.parent / "data"
    d.mkdir(exist_ok=True)
    return d


def _write_db(content: bytes) -> Callable[[Path], None]:
    return lambda root: (_data_dir(root) / "flowagent.db").write_bytes(content)


def _damaged_untouched(content: bytes) -> Callable[[AgentRun], None]:
    def check(run: AgentRun) -> None:
        text = "\n".join(run.summary)
        assert "damaged" in text and "--resume" in text, text
        assert (run.data_dir / "flowagent.db").read_bytes() == content, "written into"
        for cmd in (["runs"], ["sessions"], ["stats"], ["export", "-f", "dot"],
                    ["trace", "x"]):
            proc = _cli(run, *cmd)
            err = proc.stderr.decode()
            assert proc.returncode == 2 and err.count("\n") == 1 and "damaged" in err, \
                (cmd, proc.returncode, err)
    return check


scenario("store/db-is-garbage", _STORED, setup=_write_db(_GARBAGE),
         check=_damaged_untouched(_GARBAGE))


def _valid_then_corrupt(root: Path) -> None:
    db_file = _data_dir(root) / "flowagent.db"
    db = sqlite3.connect(db_file)
    db.execute("CREATE TABLE t(x)")
    db.executemany("INSERT INTO t VALUES(?)", [("x" * 500,)] * 200)
    db.commit()
    db.close()
    data = bytearray(db_file.read_bytes())
    data[4096 * 1:4096 * 3] = b"\xff" * 8192  # sqlite_master's children: malformed
    data[100:4096] = b"\x07" * (4096 - 100)    # and the schema page itself
    db_file.write_bytes(bytes(data))


def _malformed_untouched(run: AgentRun) -> None:
    text = "\n".join(run.summary)
    assert "damaged" in text, text
    proc = _cli(run, "runs")
    assert proc.returncode == 2 and "damaged" in proc.stderr.decode(), proc.stderr


scenario("store/db-pages-overwritten", _STORED, setup=_valid_then_corrupt,
         check=_malformed_untouched)
scenario("store/db-empty-file", _STORED, setup=_write_db(b""), check=recorded(f=100))


def _db_directory(root: Path) -> None:
    (_data_dir(root) / "flowagent.db").mkdir()


scenario("store/db-is-a-directory", _STORED, setup=_db_directory,
         check=summary_says("sidecar did not start"))
scenario("store/data-dir-is-a-file", _STORED,
         setup=lambda root: (root.parent / "data").write_text("a file"),
         check=summary_says("without recording"))
