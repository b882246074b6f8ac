"""Every way of recording one program yields the same call records.

The ``monitor`` backend can run its C callbacks calling the C recorder directly
(``_hotpath.h``), its C callbacks calling the recorder through Python, its Python callbacks,
or everything in Python (``FLOWAGENT_PURE=1``); the ``wrap`` backend has the C and the Python
recorder. Each variant runs the same program in a fresh interpreter (the recorder chooses its
twin at import) and prints its records with ids replaced by names; all must be equal: same
calls, parents, input and output shapes, results and exception types, in the same order.
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

PROGRAM = textwrap.dedent('''\
    import asyncio

    def plain(x):
        return [x]

    def boom(x):
        raise ValueError(x)

    def caller(x):
        try:
            boom(x)
        except ValueError:
            pass
        return plain(x)

    def many(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r):
        return {"first": a, "rest": [b, c]}

    def gen(n):
        for i in range(n):
            try:
                yield i
            except KeyError:
                yield -1

    def rec(n):
        return 0 if n == 0 else rec(n - 1) + 1

    def kw(*args, **kwargs):
        return len(args)

    async def coro(x):
        await asyncio.sleep(0)
        return plain(x)

    def inner(n):
        for i in range(n):
            plain(i)           # under the generator
            yield i

    def outer(n):
        for v in inner(n):
            yield plain(v)
        yield from inner(2)

    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            plain(i)
            yield {"i": i}

    async def consume(n):
        return [v async for v in agen(n)]

    def main():
        plain(1)
        plain("s")
        plain(2.5)
        caller(2)
        many(*range(18))
        rec(5)
        kw(1, 2, z=3)
        g = gen(5)
        next(g)
        g.throw(KeyError)
        next(g)
        g.close()
        list(gen(3))
        for v in outer(6):     # past the sampled yields; the consumer's calls under main
            plain(v)
        list(gen(7))
        asyncio.run(coro(3))
        asyncio.run(consume(6))
        try:
            boom({"a": [1]})
        except ValueError:
            pass
        for i in range(40):  # past the first shaped calls: the budget samples alike
            plain(i)
''')

CHILD = textwrap.dedent('''\
    import json, sys
    backend_name, variant, moddir = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, moddir)
    from flowagent.agent import backends, bootstrap, recorder
    from flowagent.protocol import wire
    from flowagent.agent.select import Selector
    if backend_name == "wrap":
        bootstrap.install_helpers()
    backend, _ = backends.choose(backend_name)
    assert backend.name == backend_name, backend.name
    if backend_name == "monitor":
        if variant == "python-callbacks":
            backend.cores = None
        elif variant == "c-via-python":
            # The same C recorder functions behind Python callables: the core cannot
            # recognise them and calls them as it calls the pure twin's.
            c_open, c_close = recorder.open_call, recorder.close_call
            recorder.open_call = lambda fid, args: c_open(fid, args)
            recorder.close_call = lambda frame, exc: c_close(frame, exc)
    recorder.S.on = True
    backend.install(Selector(("fa_parity_mod",), (), ()), True)
    import fa_parity_mod
    fa_parity_mod.main()
    backend.uninstall()
    recorder.S.on = False
    n, data, _ = recorder.take_calls()
    fns, strs = recorder._functions, recorder._strings
    name = lambda fid: fns[fid][1] if fid else None
    shape = lambda sid: (list(strs[sid]) if isinstance(strs[sid], tuple) else strs[sid]) \\
        if sid else None
    rows = [[name(r[3]), name(r[4]), shape(r[5]), shape(r[6]), r[7], shape(r[8]),
             r[1] == 0, r[0] == r[2]] for r in wire._records(n, data)]
    print(json.dumps({"rows": rows, "accelerated": recorder.ACCELERATED,
                      "errors": recorder.S.agent_errors}))
''')


def run(tmp_path: Path, backend: str, variant: str) -> dict:
    moddir = tmp_path / "mod"
    moddir.mkdir(exist_ok=True)
    (moddir / "fa_parity_mod.py").write_text(PROGRAM)
    env = {k: v for k, v in os.environ.items() if k != PURE}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if variant == "pure":
        env[PURE] = "1"
    proc = subprocess.run([sys.executable, "-c", CHILD, backend, variant, str(moddir)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def accelerated() -> bool:
    try:
        from flowagent.agent import _speedups  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the monitor backend needs 3.12+")
def test_monitor_variants_record_the_same_calls(tmp_path: Path) -> None:
    variants = ["python-callbacks", "pure"]
    if accelerated():
        variants = ["c-direct", "c-via-python", *variants]
    results = {v: run(tmp_path, "monitor", v) for v in variants}
    reference = results[variants[-1]]["rows"]
    names = [r[0] for r in reference]
    # The program really ran through every kind of call the cores handle.
    assert {"plain", "caller", "boom", "many", "gen", "rec", "kw", "coro"} <= set(names)
    assert any(r[0] == "caller" and r[4] == 2 for r in reference)      # partial
    assert any(r[0] == "boom" and r[5] == "ValueError" for r in reference)
    # A generator's calls nest under it between its yields, its consumer's under the
    # consumer, past the sampled yields too (8 and 6 yields).
    parents = [r[1] for r in reference if r[0] == "plain"]
    assert parents.count("inner") == 8 and parents.count("outer") == 6
    assert parents.count("agen") == 6
    assert parents.count("main") == 3 + 8 + 40
    for v in variants:
        assert results[v]["errors"] == 0, v
        assert results[v]["rows"] == reference, v


@pytest.mark.skipif(not accelerated(), reason="the C extension is not built here")
def test_wrap_twins_record_the_same_calls(tmp_path: Path) -> None:
    c, pure = run(tmp_path, "wrap", "c"), run(tmp_path, "wrap", "pure")
    assert c["accelerated"] and not pure["accelerated"]
    assert c["errors"] == pure["errors"] == 0
    assert c["rows"] == pure["rows"]
    assert len(c["rows"]) == 94  # every call of the program, main included


@pytest.mark.skipif(sys.version_info < (3, 12) or not accelerated(),
                    reason="MonitorCore and the C recorder are needed")
def test_the_monitor_core_calls_the_c_recorder_directly_only_when_it_is_the_c_one() -> None:
    from flowagent.agent import _cores, _speedups, monitor, recorder

    def make(open_call, close_call):
        return _cores.MonitorCore(
            classify=lambda code, frame: None, infos={}, live={}, open_call=open_call,
            close_call=close_call, resume=recorder.resume, deactivate=recorder.deactivate,
            note_yield=monitor.note_yield, is_async_yield=monitor.is_async_yield,
            unwrap_async_yield=monitor.unwrap_async_yield, state=recorder.S,
            disable=sys.monitoring.DISABLE, rv=recorder.RV)

    assert make(_speedups.open_call, _speedups.close_call).direct
    assert not make(lambda f, a: None, _speedups.close_call).direct
    assert not make(_speedups.open_call, lambda f, e: None).direct
