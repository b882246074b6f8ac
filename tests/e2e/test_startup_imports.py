"""What ``flowagent run`` loads in its own process before the program runs: a switched-off run
loads nothing of the launcher's run machinery (it becomes the program at once), and a
recorded run leaves the store interface and the command parsers to the processes that use
them. Read from the launcher's ``-X importtime`` lines (the program it starts or becomes
does not inherit the option), against a plain interpreter's own start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import _clean_env, flowagent_cmd, write_files

pytestmark = pytest.mark.e2e


def _imported(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd,
                          env=_clean_env(env), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return {line.rpartition("|")[2].strip() for line in proc.stderr.decode().splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture
def program(tmp_path: Path) -> Path:
    write_files(tmp_path, {"prog.py": "print('hello')\n"})
    return tmp_path


def test_a_switched_off_run_loads_only_what_becoming_the_program_needs(program: Path) -> None:
    plain = _imported(["-c", "pass"], program)
    launcher = _imported(flowagent_cmd("run", "prog.py")[1:], program,
                         {"FLOWAGENT_ENABLED": "0"}) - plain
    assert "flowagent.launch.target" in launcher  # the option is read: it did run
    heavy = {"flowagent.config", "flowagent.launch.run", "flowagent.launch.supervise",
             "flowagent.launch.summary", "flowagent.protocol.rundir", "argparse", "typing",
             "subprocess", "json", "dataclasses"}
    assert not launcher & heavy, sorted(launcher & heavy)
    assert not (program / ".flowagent").exists()  # and nothing was recorded


def test_a_recorded_run_leaves_the_store_and_the_parsers_to_others(program: Path) -> None:
    plain = _imported(["-c", "pass"], program)
    launcher = _imported(flowagent_cmd("run", "prog.py")[1:], program) - plain
    assert "flowagent.launch.supervise" in launcher
    for name in ("flowagent.store.api", "flowagent.store.sqlite", "sqlite3", "argparse",
                 "flowagent.sidecar.ingest", "networkx", "flask"):
        assert name not in launcher, f"the launcher imports {name}"
    assert (program / ".flowagent" / "flowagent.db").exists()
