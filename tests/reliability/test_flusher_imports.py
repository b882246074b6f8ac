"""The agent's flusher thread imports nothing the program has not loaded.

A thread importing a module holds that module's import lock; a program that forks meanwhile
gives its child the lock held by a thread the child does not have, and the child's own first
import of that module waits forever. The flusher's first batch creates the process's ring,
and the ring's size check used to import ``resource`` right there: a program forking in a
loop hung, now and then, in a child's ``os._exit()`` (its flush making its own ring).
"""

from __future__ import annotations

import pytest

from helpers import PURE, needs_sys_monitoring, run_cli

pytestmark = pytest.mark.e2e

PROGRAM = """
import os, sys, threading

main = threading.get_ident()
imports = []

def hook(event, args):
    if event == "import" and threading.get_ident() != main:
        imports.append(args[0])

sys.addaudithook(hook)

def work(i):
    return i + 1

def mine(name):
    return name.startswith(str(os.getpid()) + "-") and name.endswith(".ring")

rings = os.path.join(os.environ["FLOWAGENT_RUN_DIR"], "rings")
# Record until the flusher has sent this process's first batch (it made the ring), then
# once more, so a second batch goes out too.
while not any(mine(n) for n in os.listdir(rings)):
    work(1)
for i in range(20000):
    work(i)
sys.stdout.flush()
print("imports by other threads:", sorted(set(imports)))
"""


@pytest.mark.parametrize("backend,pure", [
    ("wrap", False), ("wrap", True), ("profile", False),
    pytest.param("monitor", False, marks=needs_sys_monitoring),
])
def test_the_flusher_loads_no_module(tmp_path, monkeypatch, backend, pure):
    monkeypatch.setenv(PURE, "1" if pure else "0")
    (tmp_path / "prog.py").write_text(PROGRAM)
    fa = run_cli(["run", "--data-dir", str(tmp_path / "data"), "--backend", backend,
                  "prog.py"], tmp_path, timeout=120)
    assert fa.returncode == 0, fa.stderr
    assert fa.stdout == b"imports by other threads: []\n", fa.stderr
