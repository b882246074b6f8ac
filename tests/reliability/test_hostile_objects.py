"""Hostile objects in recorded calls: arguments, results and exceptions whose ``__class__``,
``__len__``, ``__iter__``, ``__getattr__``, ``__eq__`` or ``__hash__`` raise or never end
(bounded), huge and self-referencing containers, objects from C extensions, proxies.

The program (tests/reliability/programs/hostile.py) notes every hostile method that runs and
prints the list: under the agent its stdout, stderr and exit status must be exactly those of
plain ``python``. What the agent could not describe is counted by the agent itself (the
``runs.agent_errors`` column, which includes shape failures, shown as ``?``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import run_cli, run_python, strip_summary
from reliability_support import PROGRAMS, accounting

from flowagent.store.sqlite import SQLiteStore

pytestmark = pytest.mark.e2e


def _compare(tmp: Path, backend: str, group: str) -> tuple[bytes, Path]:
    shutil.copy(PROGRAMS / "hostile.py", tmp)
    plain = run_python(["hostile.py", group], tmp, timeout=120)
    assert plain.returncode == 0, plain.stderr.decode()
    assert b"touched: []\n" in plain.stdout  # plainly, no hostile method ever runs
    data = tmp / "data"
    # Every call described, not the budgeted sample: each hostile value must meet shape_of.
    fa = run_cli(["run", "--data-dir", str(data), "--backend", backend, "--shape-every-call",
                  "hostile.py", group],
                 tmp, timeout=120)
    assert fa.stdout == plain.stdout
    assert strip_summary(fa.stderr) == plain.stderr
    assert fa.returncode == plain.returncode
    return plain.stdout, data


def test_hostile_values_are_never_touched(tmp_path: Path, backend: str, figure) -> None:
    out, data = _compare(tmp_path, backend, "values")
    values = int(out.split(b"values: ")[1].split(b"\n")[0])
    acc = accounting(data)
    run = acc["run"]
    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    try:
        nodes = [c for g in store.iter_session_graphs(acc["run_id"]) for c in g["nodes"]
                 if c["function_name"].partition(":")[2] in ("take", "give")]
    finally:
        store.close()
    takes = (len(nodes), sum("?" in json.dumps(c["input_shape"]) for c in nodes))
    assert takes[0] >= values * 3  # every call with a hostile value was recorded
    assert run["agent_errors"] >= 1  # the unreadable field (behind a property) was counted
    assert acc["produced"] == acc["stored"] and run["dropped_events"] == 0
    figure(f"[{backend}] {values} hostile values, each passed/returned 3 ways + 2 hostile "
           f"exceptions: stdout/stderr/exit identical to plain python, 0 hostile methods run, "
           f"{takes[0]} calls recorded, agent_errors {run['agent_errors']} (shapes it could "
           f"not read, shown as '?')", backend=backend, values=values,
           agent_errors=run["agent_errors"])


def test_metaclass_hash_is_never_called(tmp_path: Path) -> None:
    _compare(tmp_path, "wrap", "metaclass-hash")


def test_thread_name_property_is_never_called(tmp_path: Path) -> None:
    _compare(tmp_path, "wrap", "thread-name")


def test_exception_metaclass_is_never_called(tmp_path: Path) -> None:
    _compare(tmp_path, "wrap", "exception-metaclass")
