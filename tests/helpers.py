"""End-to-end helpers: run a program under the real ``flowagent run`` and read what it stored.

:func:`record` writes a program (and any extra modules) into a test's ``tmp_path``, runs
``python -m flowagent run --data-dir ... --backend ...`` in a subprocess with a timeout, and
returns a :class:`Recording`. The store is read in-process through
:class:`flowagent.store.sqlite.SQLiteStore` (read-only): it returns the same session graphs as
``flowagent trace --json``, with integer nanosecond timestamps, and costs no extra process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

# sys.monitoring appeared in Python 3.12: the monitor backend's cases skip before that.
needs_sys_monitoring = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="the monitor backend needs sys.monitoring (Python 3.12+)")

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).resolve().parent / "programs"

T = TypeVar("T")
Node = dict[str, Any]
Graph = dict[str, Any]


# The one FLOWAGENT_* variable a test run inherits: the recorder twin under test (see
# tests/e2e/conftest.py; ``FLOWAGENT_PURE=1 pytest`` runs everything on the Python twin).
PURE = "FLOWAGENT_PURE"


def hot_path() -> str:
    """Which recorder twin the runs started now use: ``"pure"`` or ``"default"``."""
    return "pure" if os.environ.get(PURE, "") not in ("", "0") else "default"


def run_twin_probe(probe: str, pure: bool, *, timeout: float = 60) -> Any:
    """Run ``probe`` (Python source printing JSON) in a fresh interpreter on one recorder twin,
    with no other FLOWAGENT_* variable, and return what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    env["PYTHONPATH"] = str(REPO)
    if pure:
        env[PURE] = "1"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_on_twin(twin: str, probe: str, *, timeout: float = 120) -> Any:
    """:func:`run_twin_probe` for a test parametrized over the twins ``"c"`` and ``"pure"``
    (the C twin is skipped where it is not built); ``probe`` may be indented."""
    if twin == "c":
        from flowagent.agent import recorder

        if not recorder.ACCELERATED:
            pytest.skip("the C accelerator is not built")
    return run_twin_probe(textwrap.dedent(probe), twin == "pure", timeout=timeout)


def _clean_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a test run: ours minus any ``FLOWAGENT_*`` leaking in (except the
    recorder twin switch), plus ``env``.

    The repository goes on PYTHONPATH so ``python -m flowagent`` finds this checkout even
    from a ``tmp_path`` working directory; PYTHONUNBUFFERED is dropped so stdout is a
    block-buffered pipe, as for most programs whose output is captured.
    """
    base = {k: v for k, v in os.environ.items()
            if (k == PURE or not k.startswith("FLOWAGENT_"))
            and k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONUNBUFFERED", "PYTHONINSPECT")}
    base["PYTHONPATH"] = str(REPO)
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    base.setdefault("PYTHONIOENCODING", "utf-8")
    if env:
        base.update(env)
    return base


def _source(program: str | os.PathLike[str]) -> str:
    """A fixture program's text: a path (absolute, or relative to tests/programs/) or source."""
    if isinstance(program, os.PathLike):
        return Path(program).read_text(encoding="utf-8")
    if "\n" not in program and program.endswith(".py"):
        path = Path(program)
        if not path.is_absolute():
            path = PROGRAMS / path
        return path.read_text(encoding="utf-8")
    return textwrap.dedent(program)


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Write ``{relative path: source}`` under ``root`` (dedented, parents created)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def import_source(tmp_path: Path, name: str, source: str) -> ModuleType:
    """Import ``source`` as module ``name`` from a file under ``tmp_path`` (a real file, as a
    backend sees a program's code: its own filename, selectable by module name)."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flowagent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowagent", *args]


def run_cli(args: Sequence[str], cwd: Path, *, timeout: float = 60,
            env: Mapping[str, str] | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m flowagent ARGS`` (bytes in and out)."""
    return subprocess.run(flowagent_cmd(*args), cwd=cwd, env=_clean_env(env), timeout=timeout,
                          capture_output=True, input=input)


def run_python(args: Sequence[str], cwd: Path, *, timeout: float = 60,
               env: Mapping[str, str] | None = None,
               input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run plain ``python ARGS``: the baseline the agent must be invisible against."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_clean_env(env),
                          timeout=timeout, capture_output=True, input=input)


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = 60,
               proc: subprocess.Popen[Any] | None = None) -> T:
    """Poll ``condition`` until it returns something true, and return that.

    Tests wait for the event a pause would stand for (a file appearing, a port accepting, a
    row in the store), never for a length of time: ``timeout`` only bounds a wait that
    would otherwise hang. With ``proc``, a process that exits while being waited for fails
    the wait at once, with its stderr when that was piped.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"exited with {proc.returncode} before {what}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def free_port() -> int:
    """A TCP port nothing listens on now, for a server the test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_accepting(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port`` now (for :func:`wait_until`)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def strip_summary(stderr: bytes) -> bytes:
    """stderr without flowagent's own summary lines (those starting with ``flowagent:``)."""
    lines = stderr.splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"flowagent:"))


@dataclass
class Recording:
    """What one ``flowagent run`` printed and stored."""

    returncode: int
    stdout: str
    stderr: str
    cwd: Path
    data_dir: Path
    backend: str
    _store: Any = field(default=None, repr=False)

    # -- store ---------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.data_dir / "flowagent.db"

    def store(self) -> Any:
        if self._store is None:
            from flowagent.store.sqlite import SQLiteStore

            self._store = SQLiteStore(str(self.db), readonly=True)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def run_info(self) -> dict[str, Any]:
        runs = self.store().runs()
        assert len(runs) == 1, runs
        return runs[0]

    def sessions(self) -> list[dict[str, Any]]:
        """Every session of the run, in start order."""
        return self.store().sessions(limit=1_000_000)

    def tree(self, session_id: str) -> Graph:
        g = self.store().session_graph(session_id)
        assert g is not None, f"no session {session_id}"
        return g

    def trees(self) -> list[Graph]:
        return [self.tree(s["session_id"]) for s in self.sessions()]

    def calls(self, function_suffix: str) -> list[Node]:
        """All recorded calls, across sessions, whose function name ends with the suffix.

        Each node gets ``session_id`` added so a test can find its tree again.
        """
        out = []
        for g in self.trees():
            for n in g["nodes"]:
                if n["function_name"].endswith(function_suffix):
                    out.append({**n, "session_id": g["session_id"]})
        return out

    def call(self, function_suffix: str) -> Node:
        """The one call of a function (fails when there are none or several)."""
        found = self.calls(function_suffix)
        assert len(found) == 1, (function_suffix, [c["function_name"] for c in found])
        return found[0]

    def function_names(self) -> set[str]:
        return {n["function_name"] for g in self.trees() for n in g["nodes"]}

    def session_of(self, function_suffix: str) -> Graph:
        """The tree of the session holding the one call of ``function_suffix``."""
        return self.tree(self.call(function_suffix)["session_id"])

    def merged(self) -> dict[str, Any]:
        """The merged architecture graph, as ``flowagent export --format json`` prints it."""
        return json.loads(self.cli("export", "--format", "json").stdout)

    def cli_text(self, *args: str) -> str:
        """A reading command run in this process through ``flowagent.cli.main`` (the same
        code path as the console script, without paying an interpreter start per call)."""
        import contextlib
        import io

        from flowagent.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main([*args, "--data-dir", str(self.data_dir)])
            except SystemExit as exc:
                assert exc.code in (0, None), (args, exc.code)
        return out.getvalue()

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run a reading command (``sessions``, ``trace``, ``export``) against this data dir."""
        proc = run_cli([*args, "--data-dir", str(self.data_dir)], self.cwd)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc


def record(program: str | os.PathLike[str], tmp_path: Path, *, backend: str = "wrap",
           args: Sequence[str] = (), extra_files: Mapping[str, str] | None = None,
           env: Mapping[str, str] | None = None, timeout: float = 60,
           options: Sequence[str] = (), script: str = "prog.py",
           input: bytes | None = None, check: bool = True) -> Recording:
    """Run ``program`` under the real launcher and return what it printed and stored.

    ``program`` is source text, or a fixture path (relative to ``tests/programs/``).
    ``extra_files`` are more modules (``{"pkg/__init__.py": "...", "m1.py": "..."}``) written
    next to it. ``options`` go to ``flowagent run`` before the script (``--no-nested``).
    With ``check`` the run must exit 0, and the store must show a finished run of the asked
    backend with no agent error, dropped event or corrupt frame.
    """
    cwd = tmp_path
    write_files(cwd, {script: _source(program), **(extra_files or {})})
    data_dir = tmp_path / ".fa-data"
    proc = run_cli(["run", "--data-dir", str(data_dir), "--backend", backend, *options,
                    script, *args], cwd, timeout=timeout, env=env, input=input)
    rec = Recording(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                    proc.stderr.decode("utf-8", "replace"), cwd, data_dir, backend)
    if check:
        assert proc.returncode == 0, rec.stderr
        assert "recording disabled" not in rec.stderr, rec.stderr
        if rec.db.exists():
            run = rec.run_info()
            health = {k: run[k] for k in ("status", "exit_code", "backend", "agent_errors",
                                          "dropped_events", "corrupt_frames")}
            assert health == {"status": "finished", "exit_code": 0, "backend": backend,
                              "agent_errors": 0, "dropped_events": 0, "corrupt_frames": 0}
    return rec


# -- reading trees ----------------------------------------------------------------------

def by_id(g: Graph) -> dict[Any, Node]:
    return {n["id"]: n for n in g["nodes"]}


def children(g: Graph, node: Node | None) -> list[Node]:
    """Direct children of ``node`` (roots when None), in start order."""
    pid = None if node is None else node["id"]
    return [n for n in g["nodes"] if n["parent_id"] == pid]


def short(name: str) -> str:
    """``module:qualname`` → ``qualname`` (synthetic ``<request>:...`` names stay whole)."""
    return name if name.startswith("<") else name.partition(":")[2]


def outline(g: Graph, node: Node | None = None, *, result: bool = False) -> list[Any]:
    """A session tree as nested lists of qualnames: ``["main", ["f", ["g"]]]``.

    A leaf is its name; a call with children is ``[name, child, child, ...]``. With
    ``result``, names carry their result: ``"f:partial"``.
    """
    def label(n: Node) -> str:
        return short(n["function_name"]) + (f":{n['result_type']}" if result else "")

    def walk(n: Node) -> Any:
        kids = children(g, n)
        return [label(n), *(walk(k) for k in kids)] if kids else label(n)

    return [walk(r) for r in children(g, node)] if node is None else walk(node)


def find(g: Graph, suffix: str) -> list[Node]:
    return [n for n in g["nodes"] if n["function_name"].endswith(suffix)]


def one(g: Graph, suffix: str) -> Node:
    found = find(g, suffix)
    assert len(found) == 1, (suffix, outline(g))
    return found[0]


def parent(g: Graph, node: Node) -> Node | None:
    return by_id(g).get(node["parent_id"])


def ancestors(g: Graph, node: Node) -> list[Node]:
    out, p = [], parent(g, node)
    while p is not None:
        out.append(p)
        p = parent(g, p)
    return out


def names(nodes: Iterable[Node]) -> list[str]:
    return [short(n["function_name"]) for n in nodes]


def backend_knows_exception_types(backend: str) -> bool:
    """Read the backend's capability flag instead of hard-coding which backend knows what."""
    from flowagent.agent.backends import choose

    return choose(backend)[0].capabilities.exception_types


def assert_exception(node: Node, backend: str, expected: str) -> None:
    """``error`` with the exception type, when the backend can know it."""
    assert node["result_type"] == "error", node
    if backend_knows_exception_types(backend):
        assert node["exception_type"] == expected, node


def program_files(directory: str, main: str = "prog.py") -> tuple[Path, dict[str, str]]:
    """A multi-file fixture under tests/programs/DIR: (main script, {other file: source})."""
    root = PROGRAMS / directory
    extra = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
             for p in sorted(root.rglob("*.py")) if p.name != main}
    return root / main, extra


class RecordingCache:
    """Recordings shared by the tests of one worker: each (name, backend, recorder twin) is
    recorded once, in its own directory from pytest's ``tmp_path_factory`` (one base per
    xdist worker)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._recordings: dict[tuple[str, str, str], Recording] = {}

    def get(self, name: str, program: str | os.PathLike[str], *, backend: str,
            **kwargs: Any) -> Recording:
        key = (name, backend, hot_path())
        if key not in self._recordings:
            tmp = self._factory.mktemp("-".join(key))
            self._recordings[key] = record(program, tmp, backend=backend, **kwargs)
        return self._recordings[key]

    def close(self) -> None:
        for rec in self._recordings.values():
            rec.close()


def fresh_copy(value: object) -> object:
    """An equal value made of new containers and instances: one the shape walk has never
    read (its tests compare a value read before with one never read)."""
    import dataclasses

    if type(value) is dict:
        return {k: fresh_copy(v) for k, v in value.items()}
    if type(value) is list:
        return [fresh_copy(v) for v in value]
    if type(value) is tuple:
        return tuple(fresh_copy(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        new = object.__new__(type(value))
        new.__dict__.update({k: fresh_copy(v) for k, v in vars(value).items()})
        return new
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(fresh_copy(v) for v in value))
    return value


def same_as_fresh(value: object) -> None:
    """The C digest, the Python twin's fingerprint and the shape of ``value`` are those of
    an equal value never read (:func:`fresh_copy`)."""
    from flowagent.agent import _speedups, shapes

    fresh = fresh_copy(value)
    assert _speedups.fingerprint(value) == _speedups.fingerprint(fresh), value
    assert shapes.fingerprint(value) == shapes.fingerprint(fresh)
    assert shapes.shape_of(value) == shapes.shape_of(fresh)
