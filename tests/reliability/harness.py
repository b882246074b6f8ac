"""Plain versus agent: one program run under ``python`` and under ``flowagent run``, compared.

A :class:`Scenario` is a small program (and its files) that exercises one way an agent could
harm its host. :func:`run_scenario` runs it plainly once (the result is shared by every
backend, across xdist workers) and under ``flowagent run`` on one backend, each in a fresh
directory of its own, and returns both outcomes; :func:`assert_same` compares stdout, stderr
without the launcher's own lines, and the exit status (negative: the death signal), each
after the scenario's ``normalize``. A scenario's ``check`` then looks at what was recorded.

Backends: ``wrap`` (the C hot path), ``wrap-pure`` (``FLOWAGENT_PURE=1``: the Python twin),
``profile``, and ``monitor`` on Python 3.12+. A scenario with a ``limitation`` documents why
its behaviour cannot be identical; its test is a strict xfail, so it fails the day the
limitation goes away.

Each test reports one ``harness`` property (class, backend, identical, records lost); the
reliability conftest folds them into one figure per class (:func:`class_figures`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import REPO, _clean_env, flowagent_cmd

KLASSES = ("crash", "async-exc", "inherit", "leaves-process", "transparency", "loss",
           "resources", "request-data", "store")


@dataclass(frozen=True)
class Scenario:
    name: str                      # unique, "<class>/<short-name>"
    klass: str                     # one of KLASSES
    files: Mapping[str, str]       # written into a fresh directory; "prog.py" is the program
    args: Sequence[str] = ()       # program arguments
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for both runs
    flowagent_args: Sequence[str] = ()   # extra `flowagent run` options
    # Optional /bin/sh wrapper; "{cmd}" becomes the quoted command line (plain: python
    # prog.py ARGS; agent: python -m flowagent run ... prog.py ARGS).
    shell: str | None = None
    setup: Callable[[Path], None] | None = None   # prepares the directory (each run its own)
    normalize: Callable[[bytes], bytes] | None = None
    check: Callable[["AgentRun"], None] | None = None
    backends: Sequence[str] | None = None  # default: every backend of this Python
    limitation: str | None = None  # documented reason it differs: the case is a strict xfail
    timeout: float = 60
    slow: bool = False             # only with FLOWAGENT_FULL=1

    def __post_init__(self) -> None:
        if self.klass not in KLASSES:
            raise ValueError(f"scenario {self.name}: unknown class {self.klass!r}")
        if not self.name.startswith(self.klass + "/"):
            raise ValueError(f"scenario {self.name}: the name must start with {self.klass}/")
        if "prog.py" not in self.files:
            raise ValueError(f"scenario {self.name}: no prog.py")


def all_backends() -> tuple[str, ...]:
    return ("wrap", "wrap-pure", "profile") + (("monitor",) if sys.version_info >= (3, 12)
                                                else ())


def backends_of(s: Scenario) -> tuple[str, ...]:
    mine = all_backends()
    return tuple(b for b in (s.backends or mine) if b in mine)


@dataclass
class Outcome:
    """What one run printed and how it ended."""

    returncode: int                # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"returncode": self.returncode, "stdout": self.stdout.decode("latin-1"),
                "stderr": self.stderr.decode("latin-1"), "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Outcome":
        return cls(d["returncode"], d["stdout"].encode("latin-1"),
                   d["stderr"].encode("latin-1"), d["seconds"])


# The launcher's own lines (summary, errors about recording) start with "flowagent: ". The
# agent inside the program prints one kind of line only when recording cannot start at all;
# that one is the program's business and stays in the comparison.
_LAUNCHER = b"flowagent: "
_AGENT_OWN = b"recording disabled in pid"


def launcher_lines(stderr: bytes) -> list[bytes]:
    return [ln for ln in stderr.splitlines() if ln.startswith(_LAUNCHER)
            and _AGENT_OWN not in ln]


def without_launcher_lines(stderr: bytes) -> bytes:
    return b"".join(ln for ln in stderr.splitlines(keepends=True)
                    if not (ln.startswith(_LAUNCHER) and _AGENT_OWN not in ln))


@dataclass
class AgentRun:
    """One ``flowagent run`` of a scenario: its outcome and what it recorded."""

    scenario: Scenario
    backend: str
    outcome: Outcome
    cwd: Path
    data_dir: Path
    _acc: Any = None

    @property
    def stdout(self) -> bytes:
        return self.outcome.stdout

    @property
    def summary(self) -> list[str]:
        """The launcher's own stderr lines (its summary), decoded."""
        return [ln.decode("utf-8", "replace") for ln in launcher_lines(self.outcome.stderr)]

    def accounting(self) -> dict[str, Any] | None:
        """The run's loss accounting and sessions from the store (None: nothing stored)."""
        if self._acc is None and (self.data_dir / "flowagent.db").exists():
            from reliability_support import accounting

            try:
                self._acc = accounting(self.data_dir)
            except Exception:  # no run row (the launcher ran the program unrecorded)
                self._acc = None
        return self._acc

    def recording(self) -> Any:
        """A :class:`helpers.Recording` of the run (sessions, call trees); close() it."""
        from helpers import Recording

        return Recording(self.outcome.returncode, self.outcome.stdout.decode("utf-8", "replace"),
                         self.outcome.stderr.decode("utf-8", "replace"), self.cwd,
                         self.data_dir, self.backend)

    def function_calls(self) -> dict[str, int]:
        """Recorded calls per function (its qualname's last part), from the merged graph of
        every run in the data directory (a child process's calls included)."""
        import sqlite3

        db_file = self.data_dir / "flowagent.db"
        if not db_file.exists():
            return {}
        db = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT f.qualname, SUM(n.calls) FROM graph_nodes n JOIN "
                              "functions f ON f.run_id=n.run_id AND f.fid=n.fid "
                              "GROUP BY f.qualname").fetchall()
        finally:
            db.close()
        counts: dict[str, int] = {}
        for qualname, n in rows:
            short = qualname.rsplit(".", 1)[-1]
            counts[short] = counts.get(short, 0) + int(n or 0)
        return counts

    def lost(self) -> int:
        """Records lost: dropped (counted) plus any produced and neither stored nor counted."""
        acc = self.accounting()
        if acc is None:
            return 0
        produced, stored, dropped = acc["produced"] or 0, acc["stored"] or 0, acc["dropped"] or 0
        return dropped + max(0, produced - stored - dropped)


def _write(root: Path, s: Scenario) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in s.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    if s.setup is not None:
        s.setup(root)


def _execute(argv: list[str], cwd: Path, env: Mapping[str, str], s: Scenario) -> Outcome:
    if s.shell is not None:
        argv = ["/bin/sh", "-c", s.shell.replace("{cmd}", shlex.join(argv))]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=_clean_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if s.stdin is not None else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(s.stdin, timeout=s.timeout)
    except subprocess.TimeoutExpired:
        # The program runs in a process group of its own (the launcher's holder leads
        # it): kill the whole session, or a process of it holding the pipes keeps this
        # communicate() waiting for good.
        _kill_session(proc.pid)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(
            f"{s.name}: {shlex.join(argv)} did not end within {s.timeout} s; stdout "
            f"{out[-1500:]!r}, stderr {err[-1500:]!r}") from None
    finally:
        # Whatever the program left behind in its session (daemons, a stuck sidecar).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return Outcome(proc.returncode, out, err, time.monotonic() - started)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (the launcher's, started with
    ``start_new_session``: the program and its children are in it, whatever their group)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _plain_env(s: Scenario) -> dict[str, str]:
    return dict(s.env)


def _agent_env(s: Scenario, backend: str) -> dict[str, str]:
    env = dict(s.env)
    # The twin is the backend's business here, whatever the outer test run asked for.
    env["FLOWAGENT_PURE"] = "1" if backend == "wrap-pure" else "0"
    return env


def run_plain(s: Scenario, shared: Path) -> tuple[Outcome, Path]:
    """The plain run of a scenario, made once and shared by every backend and worker."""
    root = shared / _slug(s.name)
    root.mkdir(parents=True, exist_ok=True)
    result = root / "outcome.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = root / "w"
        if result.exists():
            return Outcome.from_json(json.loads(result.read_text())), work
        _write(work, s)
        outcome = _execute([sys.executable, "prog.py", *s.args], work, _plain_env(s), s)
        result.write_text(json.dumps(outcome.as_json()))
        return outcome, work


def run_agent(s: Scenario, backend: str, tmp: Path) -> AgentRun:
    work = tmp / "w"
    data = tmp / "data"
    _write(work, s)
    name = "wrap" if backend == "wrap-pure" else backend
    argv = flowagent_cmd("run", "--data-dir", str(data), "--backend", name,
                         *s.flowagent_args, "prog.py", *s.args)
    outcome = _execute(argv, work, _agent_env(s, backend), s)
    return AgentRun(s, backend, outcome, work, data)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def comparable(outcome: Outcome, work: Path, s: Scenario, agent: bool) -> tuple[int, bytes, bytes]:
    """(status, stdout, stderr) as compared: the run's directory is ``<DIR>``, the
    launcher's lines are gone, then the scenario's ``normalize``."""
    def norm(data: bytes) -> bytes:
        for d in {str(work), os.path.realpath(work)}:
            data = data.replace(d.encode(), b"<DIR>")
        return s.normalize(data) if s.normalize is not None else data

    err = without_launcher_lines(outcome.stderr) if agent else outcome.stderr
    return outcome.returncode, norm(outcome.stdout), norm(err)


def differences(plain: tuple[int, bytes, bytes], agent: tuple[int, bytes, bytes]) -> list[str]:
    out = []
    for what, p, a in zip(("exit status", "stdout", "stderr"), plain, agent):
        if p != a:
            out.append(f"{what} differs:\n  plain: {_show(p)}\n  agent: {_show(a)}")
    return out


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        return repr(v if len(v) < 3000 else v[:1500] + b" ... " + v[-1500:])
    return repr(v)


# -- figures ---------------------------------------------------------------------------------

def class_figures(reports: Sequence[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """One figure per scenario class from the tests' ``harness`` properties:
    (class, text, data). Tried counts (scenario, backend) runs; a documented limitation is
    tried and not identical."""
    per: dict[str, dict[str, Any]] = {}
    for rep in reports:
        for key, value in getattr(rep, "user_properties", ()):
            if key != "harness":
                continue
            d = json.loads(value)
            c = per.setdefault(d["klass"], {"tried": 0, "identical": 0, "limitations": 0,
                                            "lost": 0, "scenarios": set(), "failed": 0})
            c["tried"] += 1
            c["scenarios"].add(d["scenario"])
            c["lost"] += d["lost"]
            if d["limitation"]:
                c["limitations"] += 1
            elif d["identical"] and d["passed"]:
                c["identical"] += 1
            else:
                c["failed"] += 1
    out = []
    for klass in sorted(per):
        c = per[klass]
        text = (f"{klass}: {len(c['scenarios'])} scenarios, {c['tried']} runs tried "
                f"(scenario x backend), {c['identical']} identical, {c['limitations']} "
                f"documented limitations, {c['failed']} failed; records lost "
                f"{c['lost']}")
        data = {k: (len(v) if isinstance(v, set) else v) for k, v in c.items()}
        out.append((klass, text, data))
    return out


def repo_root() -> Path:
    return REPO
