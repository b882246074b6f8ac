"""The C extensions and their Python twins implement one written interface (the ``.pyi``).

For every function of ``_speedups.pyi`` that has a recorder twin, the recorder must bind the
C function itself when the extension is active, and its own Python function under
``FLOWAGENT_PURE=1``; a Python definition that silently shadows the C one (so the C code is
built, tested in isolation and never used) fails here. Each twin is checked in a fresh
interpreter, because the recorder chooses its twin once, at import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PURE, REPO

AGENT = REPO / "flowagent" / "agent"
# recorder.py's names for the C functions it binds under another name.
RECORDER_NAME = {"current": "_get", "set_current": "_set"}


def interface(stub: Path) -> tuple[list[str], list[str], list[str]]:
    """(twinned functions, module-only functions, other public names) of a stub file."""
    text = stub.read_text()
    head, _, tail = text.partition("# Module-only (no recorder twin):")
    twinned = [n.name for n in ast.parse(head).body if isinstance(n, ast.FunctionDef)]
    only = [n.name for n in ast.parse(tail).body if isinstance(n, ast.FunctionDef)] if tail \
        else []
    # Constants and objects (a class in the stub describes an object's type, not an export).
    other = [n.target.id for n in ast.parse(text).body
             if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    return twinned, only, other


PROBE = """
import json, sys
from flowagent.agent import recorder
names = json.loads(sys.argv[1])
acc = recorder._speedups
out = {}
for name, rname in names.items():
    mine = getattr(recorder, rname, None)
    out[name] = {
        "exists": mine is not None,
        "is_c": acc is not None and mine is getattr(acc, name, object()),
        "module": getattr(mine, "__module__", None),
        "builtin": type(mine).__name__ == "builtin_function_or_method",
    }
print(json.dumps({"accelerated": recorder.ACCELERATED, "names": out}))
"""


def probe(pure: bool) -> dict:
    twinned, _, _ = interface(AGENT / "_speedups.pyi")
    env = {k: v for k, v in os.environ.items() if k != PURE}
    if pure:
        env[PURE] = "1"
    env["PYTHONPATH"] = str(REPO)
    names = {n: RECORDER_NAME.get(n, n) for n in twinned}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names)], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def speedups():
    try:
        from flowagent.agent import _speedups
    except ImportError:
        pytest.skip("the C extension is not built here")
    return _speedups


def test_the_stub_lists_exactly_what_the_extension_exports() -> None:
    module = speedups()
    twinned, only, other = interface(AGENT / "_speedups.pyi")
    # `_C_API` (the capsule other extensions call) is private to the package, yet part of
    # the written interface: dunder names are the only ones left out.
    exported = {n for n in dir(module) if not n.startswith("__")}
    assert exported == set(twinned) | set(only) | set(other)


def test_with_the_extension_every_twinned_name_is_the_c_function() -> None:
    speedups()
    result = probe(pure=False)
    assert result["accelerated"], "the recorder did not choose the built C extension"
    wrong = {n: r for n, r in result["names"].items() if not r["is_c"]}
    assert not wrong, f"recorder binds a Python definition where C is active: {wrong}"


def test_under_the_pure_switch_every_twinned_name_is_python() -> None:
    result = probe(pure=True)
    assert not result["accelerated"]
    # Python functions of recorder.py; current/set_current are its ContextVar's own methods.
    wrong = {n: r for n, r in result["names"].items()
             if not r["exists"] or r["is_c"] or (
                 n not in RECORDER_NAME and r["module"] != "flowagent.agent.recorder")}
    assert not wrong, f"no pure-Python twin under {PURE}=1: {wrong}"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="MonitorCore needs sys.monitoring")
def test_the_cores_stub_matches_the_monitor_core() -> None:
    try:
        from flowagent.agent import _cores
    except ImportError:
        pytest.skip("the C cores are not built here")
    tree = ast.parse((AGENT / "_cores.pyi").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    exported = {n for n in dir(_cores.MonitorCore) if not n.startswith("_")}
    assert exported == methods
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    keywords = [a.arg for a in init.args.kwonlyargs]
    from flowagent.agent import monitor
    import inspect
    # monitor.py constructs the core with exactly the stub's keywords.
    source = inspect.getsource(monitor._c_callbacks)
    assert all(f"{k}=" in source for k in keywords)
