"""The C monitor core finds each open call without a frame object, and still finds the right one.

``_cores.MonitorCore`` keys a plain function's open call by the interpreter's own frame of
the call (no frame object is made unless the call's input is shaped). These programs stress
what that identity has to survive: recursion past the core's stack of open calls, threads
whose calls interleave on that stack, exceptions unwinding many frames at once, a program
that makes the frame object itself, and parameters held in cells. Every variant of the
monitor backend (C callbacks calling the C recorder, the Python callbacks, everything in
Python) must record the same calls with the same parents, shapes and results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import PURE, REPO

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12),
                                reason="the monitor backend needs 3.12+")

PROGRAM = textwrap.dedent('''\
    import sys
    import threading

    def leaf(x):
        return x

    def deep(n):
        return leaf(n) if n == 0 else deep(n - 1) + 1

    def fails(n):
        if n == 0:
            raise KeyError(n)
        return fails(n - 1)

    def looks(x):
        frame = sys._getframe()
        return leaf(frame.f_locals["x"])

    def captured(x, y):
        def inner():
            return x, y
        return inner()

    def worker(k):
        for i in range(300):
            leaf(k)
            deep(2)
            try:
                fails(1)
            except KeyError:
                pass

    def main():
        leaf(1)
        deep(300)
        try:
            fails(280)
        except KeyError:
            pass
        looks(2)
        captured({"a": 1}, [2.5])
        sys.setswitchinterval(1e-6)  # threads interleave their open calls
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sys.setswitchinterval(0.005)
        leaf("after")
''')

CHILD = textwrap.dedent('''\
    import json, sys
    variant, moddir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, moddir)
    from flowagent.agent import backends, recorder
    from flowagent.protocol import wire
    from flowagent.agent.select import Selector
    backend, _ = backends.choose("monitor")
    assert backend.name == "monitor", backend.name
    if variant == "python-callbacks":
        backend.cores = None
    recorder.S.on = True
    backend.install(Selector(("fa_frames_mod",), (), ()), True)
    import fa_frames_mod
    fa_frames_mod.main()
    backend.uninstall()
    recorder.S.on = False
    n, data, _ = recorder.take_calls()
    fns, strs = recorder._functions, recorder._strings
    name = lambda fid: fns[fid][1] if fid else None
    shape = lambda sid: (list(strs[sid]) if isinstance(strs[sid], tuple) else strs[sid]) \\
        if sid else None
    rows = [[name(r[3]), name(r[4]), shape(r[5]), shape(r[6]), r[7], shape(r[8])]
            for r in wire._records(n, data)]
    print(json.dumps({"rows": rows, "errors": recorder.S.agent_errors,
                      "c": backend.cores is not None and recorder.ACCELERATED}))
''')


def run(tmp_path: Path, variant: str) -> dict:
    moddir = tmp_path / "mod"
    moddir.mkdir(exist_ok=True)
    (moddir / "fa_frames_mod.py").write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if k != PURE}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if variant == "pure":
        env[PURE] = "1"
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, str(moddir)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def calls(rows: list[list]) -> list[list]:
    """The calls without their shapes, in one order: which calls of a function the shape
    budget samples depends on how the threads interleaved."""
    return sorted(([r[0], r[1], r[4], r[5]] for r in rows), key=json.dumps)


def shapes(rows: list[list]) -> set[str]:
    """Every (function, input shape, output shape) seen where both were described."""
    return {json.dumps([r[0], r[2], r[3]]) for r in rows if r[2] is not None}


def test_every_variant_finds_the_same_open_calls(tmp_path: Path) -> None:
    variants = ["c", "python-callbacks", "pure"]
    results = {v: run(tmp_path, v) for v in variants}
    assert not results["pure"]["c"] and not results["python-callbacks"]["c"]
    try:
        from flowagent.agent import _cores, _speedups  # noqa: F401
    except ImportError:
        pass
    else:
        assert results["c"]["c"], "the C core was not the one running"
    reference = results["pure"]["rows"]
    count = {name: sum(1 for r in reference if r[0] == name)
             for name in ("leaf", "deep", "fails", "looks", "captured", "worker")}
    # 1 + 3 threads x 300 leaf calls, plus one each from deep's bottoms and looks.
    assert count["leaf"] == 1 + 900 + 1 + 900 + 1 + 1
    assert count["deep"] == 301 + 900 * 3
    assert count["fails"] == 281 + 900 * 2
    assert count["worker"] == 3 and count["looks"] == 1 and count["captured"] == 1
    # Parents: each recursion nests under itself, down from main or worker.
    assert sum(1 for r in reference if r[0] == "deep" and r[1] == "deep") == 300 + 900 * 2
    assert sum(1 for r in reference if r[0] == "fails" and r[5] == "KeyError") == 281 + 1800
    captured = next(r for r in reference if r[0] == "captured")
    assert captured[2] is not None and "a" in json.dumps(captured[2])
    for v in variants:
        assert results[v]["errors"] == 0, v
        assert calls(results[v]["rows"]) == calls(reference), v
        assert shapes(results[v]["rows"]) == shapes(reference), v
