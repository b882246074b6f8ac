"""What the processes of a run load before they do their first work: the agent inside a
program that records nothing, and the sidecar until it has stored an empty run. Module sets,
not times: each heavy module named here once cost every run's start a few milliseconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import _clean_env, flowagent_cmd, record, write_files

pytestmark = pytest.mark.e2e

# What recording does not need before the first recorded call: the instrumenter (ast) when
# the instrumented code comes from the cache, and the standard library's heavyweights.
_AGENT_NEVER_AT_START = {"ast", "flowagent.agent.instrument", "argparse", "hashlib",
                         "inspect", "dataclasses", "subprocess", "sqlite3", "flowagent.store.api",
                         "flowagent.config", "typing"}


def _env() -> dict[str, str]:
    # Bytecode (and instrumented code) written and used, as in an installed Python: the
    # second run of a script takes its instrumented code from the cache.
    env = _clean_env(None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def test_a_program_recording_nothing_loads_no_instrumenter(tmp_path: Path) -> None:
    write_files(tmp_path, {"prog.py": "import sys\n"
                                      "open(sys.argv[1], 'w').write('\\n'.join(sys.modules))\n"})
    out = tmp_path / "modules.txt"
    for _ in range(2):  # the first run writes the instrumented main script's cache
        proc = subprocess.run(flowagent_cmd("run", "--data-dir", "data", "prog.py", str(out)),
                              cwd=tmp_path, env=_env(), capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    loaded = set(out.read_text().split())
    assert "flowagent.agent.recorder" in loaded  # it was recorded
    assert not loaded & _AGENT_NEVER_AT_START, sorted(loaded & _AGENT_NEVER_AT_START)
    # Nothing to record, nothing to send: the batch codec never loads.
    assert not loaded & {"msgpack", "zstandard"}, sorted(loaded & {"msgpack", "zstandard"})


# What the agent itself loads at start for a program that records nothing yet: ~25 M
# instructions each for `re` (with `enum`; fnmatch, json, the W3C pattern) and the integrations.
_AGENT_LOADS_LATER = {"re", "enum", "json", "fnmatch", "subprocess", "ctypes",
                      "flowagent.agent.integrations.frameworks",
                      "flowagent.agent.integrations.httpclient",
                      "flowagent.agent.integrations.testing",
                      "flowagent.agent.integrations.webclients",
                      "flowagent.agent.integrations.mp", "flowagent.agent.integrations.wsgi",
                      "flowagent.agent.integrations.asgi",
                      "flowagent.agent.integrations.webrequest"}


def test_the_agent_starts_without_re_json_or_the_framework_integrations(
        tmp_path: Path) -> None:
    # The environment a real run gives its program; the program then starts with -S, its
    # bootstrap imported by hand: site's .pth files (an editable install's finder loads re)
    # would hide what the agent loads.
    write_files(tmp_path, {"env.py": "import json, os, sys\n"
                                     "json.dump(dict(os.environ), open(sys.argv[1], 'w'))\n"})
    proc = subprocess.run(flowagent_cmd("run", "--data-dir", "data", "env.py", "env.json"),
                          cwd=tmp_path, env=_env(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    import json

    env = json.loads((tmp_path / "env.json").read_text())
    (Path(env["FLOWAGENT_RUN_DIR"]) / "rings").mkdir(parents=True, exist_ok=True)
    show = "import sys; print(' '.join(sorted(sys.modules)))"

    def modules(code: str) -> set[str]:
        ran = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, timeout=120)
        assert ran.returncode == 0, ran.stderr.decode()[-2000:]
        return set(ran.stdout.decode().split())

    # Without site, a virtualenv's interpreter names its base prefix: the run's interpreter.
    env["FLOWAGENT_PREFIX"] = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; print(sys.prefix)"], capture_output=True,
        check=True, timeout=60).stdout.decode().strip()
    plain = modules(show)
    assert not plain & _AGENT_LOADS_LATER, sorted(plain & _AGENT_LOADS_LATER)
    loaded = modules("import sitecustomize; " + show) - plain
    assert {"flowagent.agent.recorder", "flowagent.agent.integrations.procs"} <= loaded
    assert not loaded & _AGENT_LOADS_LATER, sorted(loaded & _AGENT_LOADS_LATER)
    # A framework's integration comes with the framework's module.
    later = modules("import sitecustomize, http.client; " + show)
    assert "flowagent.agent.integrations.httpclient" in later
    assert "flowagent.agent.integrations.frameworks" not in later


def test_the_sidecar_stores_a_run_without_argparse_hashlib_or_the_redactor(
        tmp_path: Path) -> None:
    (tmp_path / "run" / "rings").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flowagent.sidecar", "--once", "--run-dir",
         str(tmp_path / "run"), "--db", str(tmp_path / "flowagent.db"), "--run-id", "r1",
         "--max-data-size", str(1 << 30), "--retention", "100", "--service", "svc",
         "--started-ns", "1"],
        cwd=tmp_path, env=_clean_env({"FLOWAGENT_ENABLED": "0"}), capture_output=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.startswith(b"READY ") and b'"sessions": 0' in proc.stdout
    loaded = {line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
              if line.startswith("import time:") and "|" in line}
    assert "flowagent.store.api" in loaded
    # No process made a ring: the ingestion machinery (and the dataclasses and inspect its
    # modules use) never loads.
    for name in ("argparse", "gettext", "hashlib", "_hashlib", "shutil", "flowagent.redact",
                 "traceback", "flowagent.agent.recorder", "flowagent.sidecar.ingest",
                 "flowagent.sidecar.aggregate", "dataclasses", "inspect", "zstandard",
                 "msgpack", "typing"):
        assert name not in loaded, f"the sidecar imports {name}"


def test_the_sidecar_stores_a_run_and_polls_its_fleet_without_re_json_or_enum(
        tmp_path: Path) -> None:
    # Without site (an editable install's finder, or a .pth, may load re for everyone): what
    # the sidecar itself loads while it opens the store, makes the run's row, polls its
    # service's fleet row, ends the run and says the summary. `re` (json's patterns) with
    # `enum` (also signal's wrappers) cost every run's start ~30 M instructions.
    import flowagent

    from flowagent.store.api import open_store

    root = str(Path(flowagent.__file__).resolve().parent.parent)
    db = tmp_path / "flowagent.db"
    (tmp_path / "run" / "rings").mkdir(parents=True)
    writer = open_store(str(db))  # the service's settings, as `flowagent control` leaves them
    writer.set_service_control("svc", paused=True, sample_rate=0.5, include=["app.*"],
                               exclude=[])
    writer.close()
    proc = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-m", "flowagent.sidecar", "--once",
         "--run-dir", str(tmp_path / "run"), "--db", str(db), "--run-id", "r1",
         "--max-data-size", str(1 << 30), "--service", "svc", "--started-ns", "1"],
        cwd=tmp_path, env=_clean_env({"FLOWAGENT_ENABLED": "0", "PYTHONPATH": root}),
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    ready, summary = proc.stdout.decode().splitlines()
    assert ready.startswith("READY ")
    import json

    said = json.loads(summary)
    assert (said["sessions"], said["processes"], said["run_row"]) == (0, 0, False)
    loaded = {line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
              if line.startswith("import time:") and "|" in line}
    assert {"flowagent.store.sqlite", "flowagent.sidecar.control"} <= loaded
    assert not loaded & {"re", "enum", "json", "signal", "flowagent.model.shapes"}, sorted(
        loaded & {"re", "enum", "json", "signal", "flowagent.model.shapes"})
    reader = open_store(str(db), readonly=True)
    try:
        run = next(r for r in reader.runs() if r["run_id"] == "r1")
        assert run["service"] == "svc"
        assert reader.service_control("svc").state()["include"] == ["app.*"]
    finally:
        reader.close()


_CODEC_AT_START = """
import sys

def work(x):
    return x + 1

print(sorted(m for m in ("msgpack", "zstandard") if m in sys.modules))
work(1)
"""


@pytest.mark.parametrize("backend", [
    "wrap", "profile",
    pytest.param("monitor", marks=pytest.mark.skipif(
        sys.version_info < (3, 12), reason="the monitor backend needs sys.monitoring"))])
def test_the_batch_codec_loads_before_a_script_with_functions_runs(
        tmp_path: Path, backend: str) -> None:
    # Just before the script runs (wrap swaps its function bodies there; profile and monitor
    # see them as they run), in the main thread: a script recording much never fills the
    # ring with uncompressed batches.
    rec = record(_CODEC_AT_START, tmp_path, backend=backend)
    assert rec.stdout == "['msgpack', 'zstandard']\n"
    assert [c["function_name"] for c in rec.calls("work")] == ["__main__:work"]


def test_a_selected_module_imported_loads_the_batch_codec(tmp_path: Path) -> None:
    rec = record("import sys\nimport mine\n"
                 "print(sorted(m for m in ('msgpack', 'zstandard') if m in sys.modules))\n"
                 "mine.work(1)\n", tmp_path, backend="profile",
                 extra_files={"mine.py": "def work(x):\n    return x + 1\n"})
    assert rec.stdout == "['msgpack', 'zstandard']\n"
    assert [c["function_name"] for c in rec.calls("work")] == ["mine:work"]


def _loaded_by(code: str, cwd: Path) -> set[str]:
    """Modules ``python -c CODE`` loads beyond what ``python -c pass`` does."""
    def imported(source: str) -> set[str]:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", source], cwd=cwd,
                              env=_clean_env({"FLOWAGENT_ENABLED": "0"}),
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        return {line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:") and "|" in line}

    return imported(code) - imported("pass")


def test_the_launcher_reads_its_config_and_names_its_service_without_typing_or_re(
        tmp_path: Path) -> None:
    # What `flowagent run` does before it can start the sidecar: every module loaded here
    # delays the sidecar, whose life is a short run's critical path.
    loaded = _loaded_by(
        "import os\n"
        "from flowagent.config import load_config\n"
        "from flowagent.service import default_service\n"
        "cfg = load_config(os.getcwd(), {}, {'include': ['app.*']})\n"
        "assert default_service('script', 'my app.py') == 'my-app'\n", tmp_path)
    assert "flowagent.config" in loaded
    assert not loaded & {"typing", "re", "dataclasses", "pathlib"}, sorted(
        loaded & {"typing", "re", "dataclasses", "pathlib"})


def test_a_record_declared_without_typing_is_typings_named_tuple() -> None:
    from typing import NamedTuple as TypingNamedTuple

    from flowagent.record import NamedTuple

    class Light(NamedTuple):
        """A record."""

        name: str
        size: int = 3
        tags: tuple[str, ...] = ()
        KIND = "light"

        def grown(self, by: int) -> int:
            return self.size + by

    class Typed(TypingNamedTuple):
        """A record."""

        name: str
        size: int = 3
        tags: tuple[str, ...] = ()
        KIND = "light"

        def grown(self, by: int) -> int:
            return self.size + by

    for cls in (Light, Typed):
        r = cls("a")
        assert (r, r.size, r._asdict(), r._replace(size=4)) == (
            ("a", 3, ()), 3, {"name": "a", "size": 3, "tags": ()}, ("a", 4, ()))
        assert cls._fields == ("name", "size", "tags")
        assert cls._field_defaults == {"size": 3, "tags": ()}
        assert cls.__doc__ == "A record."
        assert list(cls.__annotations__) == ["name", "size", "tags"]
        assert cls.__qualname__.endswith(".<locals>." + cls.__name__)
        with pytest.raises(TypeError):
            cls()  # the field without a default
        assert (r.grown(2), r.KIND, cls.KIND, "KIND" in cls._fields) == (5, "light", "light",
                                                                          False)
    for base in (NamedTuple, TypingNamedTuple):
        with pytest.raises(AttributeError):
            class Bad(base):  # type: ignore[misc, valid-type]
                a: int

                def _replace(self) -> None:  # namedtuple's own
                    pass


def test_the_store_interface_loads_without_typing(tmp_path: Path) -> None:
    # Every sidecar and command imports it first; its records are record.NamedTuple's.
    loaded = _loaded_by("from flowagent.store.api import RunEnd, Store, open_store\n"
                        "assert RunEnd._fields[0] == 'argv'\n", tmp_path)
    assert "flowagent.store.api" in loaded
    assert "typing" not in loaded


def test_the_store_interface_is_checked_as_typing_checks_a_runtime_protocol(
        tmp_path: Path) -> None:
    from flowagent.store.api import Store, open_store

    store = open_store(str(tmp_path / "flowagent.db"))
    try:
        assert isinstance(store, Store)
    finally:
        store.close()
    members = Store._members  # type: ignore[attr-defined]
    assert {"url", "readonly", "capabilities", "close", "transaction", "create_run",
            "finish_run", "runs"} <= set(members)

    def with_members(names: list[str]) -> object:
        return type("Impl", (), dict.fromkeys(names))()

    assert isinstance(with_members(list(members)), Store)
    for missing in ("close", "capabilities", "runs"):
        assert not isinstance(with_members([m for m in members if m != missing]), Store)
    assert not isinstance(object(), Store)
