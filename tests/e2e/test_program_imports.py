"""The agent is a guest: a recorded program imports only what it would import anyway, plus the
agent's own small set (``flowagent.agent``, the standard library, msgpack, zstandard; wrapt is
allowed, unused today).

The sidecar, CLI and viewer depend on Flask, networkx, psutil and more; none of that may reach
the program's ``sys.modules``, whatever the backend. A helper module (excluded from
recording) writes the program's ``sys.modules`` when it starts and, through an audit hook,
every module imported after that, up to the interpreter's last import: imports the agent
makes at exit, during its final flush, are counted too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import record, run_python

pytestmark = pytest.mark.e2e

IMPORT_LOG = """
    import os
    import sys

    _fd = os.open(os.environ["IMPORT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_fd, "".join(name + "\\n" for name in sorted(sys.modules)).encode())


    def _imported(event, args):
        if event == "import":
            os.write(_fd, (args[0] + "\\n").encode())


    sys.addaudithook(_imported)
"""

PROGRAM = """
    import importlog  # first: everything imported from here on is logged

    import json
    import threading


    class Cart:
        def __init__(self):
            self.items = []

        def add(self, sku, qty):
            self.items.append({"sku": sku, "qty": qty})
            return len(self.items)


    def total(cart):
        return sum(item["qty"] for item in cart.items)


    def pages(n):
        for i in range(n):
            yield [i] * i


    def checkout(n):
        cart = Cart()
        for i in range(n):
            cart.add(f"sku-{i}", i)
        try:
            json.loads("{broken")
        except ValueError:
            pass
        return {"total": total(cart), "pages": list(pages(3))}


    worker = threading.Thread(target=checkout, args=(3,))
    worker.start()
    worker.join()
    print(json.dumps(checkout(5), sort_keys=True))
"""

# What the sidecar, the CLI, the viewer and the exports import (the run's dependencies and
# theirs, the store's database): never in the recorded program unless it imports them itself.
READ_SIDE = {"flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker",
             "networkx", "psutil", "prometheus_client", "sqlite3", "_sqlite3", "opentelemetry",
             "google", "flowagent_viewer", "viewer"}

# Top-level packages outside the standard library that the agent may bring into a program
# (msgpack's compiled extension registers ``cython_runtime`` and ``_cython_<version>``).
AGENT_PACKAGES = {"flowagent", "msgpack", "zstandard", "wrapt", "sitecustomize",
                  "cython_runtime"}

# What the agent adds of the standard library stays small (29 modules on Python 3.11-3.13:
# ast, datetime, mmap, random, typing, zlib... and their C halves); the budget leaves room
# without letting a package like asyncio, email or logging in unnoticed.
STDLIB_BUDGET = 40


def _imports(log: Path) -> set[str]:
    return set(log.read_text().split())


def _top(name: str) -> str:
    return name.partition(".")[0]


def _added_by_the_agent(tmp_path: Path, backend: str) -> tuple[set[str], set[str]]:
    """(modules of the recorded program, modules it gained from the agent)."""
    plain_log, recorded_log = tmp_path / "plain.log", tmp_path / "recorded.log"
    rec = record(PROGRAM, tmp_path, backend=backend, extra_files={"importlog.py": IMPORT_LOG},
                 options=["--exclude", "importlog"], env={"IMPORT_LOG": str(recorded_log)})
    plain = run_python(["prog.py"], tmp_path, env={"IMPORT_LOG": str(plain_log)})
    assert plain.returncode == 0, plain.stderr.decode()
    assert rec.stdout == plain.stdout.decode() == '{"pages": [[], [1], [2, 2]], "total": 10}\n'
    # the run recorded the program (so the agent was there to import things)
    assert {"__main__:checkout", "__main__:Cart.add"} <= rec.function_names()
    rec.close()
    recorded, baseline = _imports(recorded_log), _imports(plain_log)
    assert "json" in baseline and "importlog" in baseline
    return recorded, recorded - baseline


def test_the_read_side_never_reaches_the_program(tmp_path: Path, backend: str) -> None:
    recorded, added = _added_by_the_agent(tmp_path, backend)
    assert not {m for m in recorded if _top(m) in READ_SIDE}
    ours = {m for m in recorded if _top(m) == "flowagent"}
    # the agent and the contract it shares with the sidecar, nothing of the read side
    # (flowagent.record: typed named tuples without typing, a leaf of collections only)
    assert ours and all(m in ("flowagent", "flowagent.agent", "flowagent.protocol",
                              "flowagent.record") or
                        m.startswith(("flowagent.agent.", "flowagent.protocol."))
                        for m in ours), sorted(ours)
    # everything else the agent added is the standard library or the agent's own packages
    stdlib = {m for m in added if _top(m) in sys.stdlib_module_names
              or m.startswith("_sysconfigdata_")}
    foreign = {m for m in added - stdlib if _top(m) not in AGENT_PACKAGES
               and not m.startswith("_cython_")}
    assert not foreign, sorted(foreign)
    assert len(stdlib) <= STDLIB_BUDGET, sorted(stdlib)


def test_a_program_that_imports_flask_keeps_it(tmp_path: Path) -> None:
    # The baseline is the program itself: what it imports is not the agent's doing.
    program = PROGRAM.replace("import json\n", "import json\n    import flask\n")
    plain_log, recorded_log = tmp_path / "plain.log", tmp_path / "recorded.log"
    record(program, tmp_path, extra_files={"importlog.py": IMPORT_LOG},
           options=["--exclude", "importlog"], env={"IMPORT_LOG": str(recorded_log)}).close()
    run_python(["prog.py"], tmp_path, env={"IMPORT_LOG": str(plain_log)})
    assert "flask" in _imports(recorded_log) and "flask" in _imports(plain_log)
    added = _imports(recorded_log) - _imports(plain_log)
    assert not {m for m in added if _top(m) in READ_SIDE - {"flask"}}, sorted(added)
