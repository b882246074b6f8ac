"""The recorder's two hot-path twins: built where they can be, chosen as asked, and the same.

The C accelerator and the pure-Python twin must produce identical records for identical
programs. Each twin runs the same probe in its own interpreter (the twin is chosen at
import); the probe instruments real code, drives every path of the hot path (nesting,
sessions, errors, partial results, generators, sampling, the shape budget, threads, asyncio
tasks, agent errors) and prints the decoded records with ids made relative and times left
out, and the two outputs are compared.

The pure twin sets its ContextVar at every call; the C twin writes the current call in place
where no other context can see it. The probe's copied, shared and crowded contexts (tasks
that run while their creator is in another call, copy_context, to_thread, a child that sets a
variable of its own, a hundred variables) are where an unsound in-place write would nest a
call under the wrong parent, and so make the twins differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from flowagent.agent import recorder
from helpers import run_twin_probe
from flowagent.protocol import wire


PROBE = textwrap.dedent('''
    import asyncio, contextvars, json, sys, threading
    from flowagent.agent import bootstrap, recorder
    from flowagent.protocol import wire
    from flowagent.agent.instrument import instrument_source

    SOURCE = """
    import asyncio, contextvars
    def add(a, b):
        return a + b
    def boom(x):
        raise ValueError(x)
    def handled():
        try:
            boom(1)
        except ValueError:
            return "saved"
    def outer(items):
        total = 0
        for i in items:
            total = add(total, i)
        return [total, handled()]
    def gen(n):
        for i in range(n):
            yield add(i, i)
    def consume():
        return sum(gen(3)) + next(iter(gen(5)))
    def hot(i):
        return i
    def shapes(d, k=None):
        return {"k": [d]}
    async def child(i):
        await asyncio.sleep(0)
        return add(i, 1)
    async def parent():
        t = asyncio.create_task(child(1))
        await asyncio.sleep(0)
        r = add(2, 2)
        return await t + r
    async def pause():
        await asyncio.sleep(0)  # other tasks run while this call is open
    async def spawner():
        t = asyncio.create_task(child(2))
        add(3, 3)
        await pause()  # the child runs now: it must nest under spawner, not pause
        r = await t
        return r + add(5, 5)
    async def keeps_calling(make_child):
        t = asyncio.create_task(make_child())
        await asyncio.sleep(0)  # the child sets a variable of its own, then waits
        add(6, 6)
        await pause()  # the child calls now: under keeps_calling, not pause
        r = await t
        return r + add(7, 7)
    def capture():
        return contextvars.copy_context()  # copied while capture is the current call
    def copies():
        ctx = capture()
        add(8, 8)
        ctx.run(add, 9, 9)  # under capture, as of the copy
        ctx.run(add, 10, 10)
        return contextvars.copy_context().run(add, 11, 11)  # under copies
    async def offloads():
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(None, add, 12, 12)  # no context: its own session
        b = await asyncio.to_thread(add, 13, 13)  # a copy of the context: under offloads
        return a + b + add(14, 14)
    async def resumes(g):
        return next(g)
    async def gen_across_tasks():
        g = gen(4)
        first = next(g)
        second = await asyncio.create_task(resumes(g))
        return first + second + sum(g)
    async def fan(i):
        await asyncio.sleep(0)
        return add(i, i)
    async def fans():
        return sum(await asyncio.gather(*(fan(i) for i in range(40))))
    def turn(ready, mine, other, k):
        ready.set()
        for i in range(k):  # two threads take turns, each inside its own call
            mine.wait()
            mine.clear()
            add(i, k)
            other.set()
    def crowd(i):
        return add(i, 1)
    """
    bootstrap.install_helpers()
    code, _ = instrument_source(SOURCE, "probe.py", "probe", recorder.register_function)
    m = {"__name__": "probe"}
    exec(code, m)
    S = recorder.S
    S.on = True
    # Writes of the current call that were real ContextVar.set calls (C twin only).
    context_sets = getattr(recorder._speedups, "context_sets", lambda: 0)
    sets = {}

    m["outer"]([1, 2, 3])
    m["consume"]()
    try:
        m["boom"]("x")
    except ValueError:
        pass
    before = context_sets()
    for i in range(3000):
        m["hot"](i)
    sets["hot loop"] = context_sets() - before
    m["shapes"]({"a": 1}, k=[1.5])
    t = threading.Thread(target=m["outer"], args=([4],))
    t.start(); t.join()
    asyncio.run(m["parent"]())

    # Contexts copied, shared and crowded: the C twin writes the current call in place only
    # where no other context can see it, so every one of these nests as the pure twin does.
    user_var = contextvars.ContextVar("user_var")
    async def sets_then_calls():  # not instrumented: sets a variable before its first call
        user_var.set(1)
        await asyncio.sleep(0)
        return m["add"](15, 15)
    many = [contextvars.ContextVar(f"many{i}") for i in range(100)]
    def crowd_context():  # our variable in a sub-node of an array root
        for v in many:
            v.set(0)
    asyncio.run(m["spawner"]())
    asyncio.run(m["keeps_calling"](sets_then_calls))
    crowded = contextvars.copy_context()
    crowded.run(crowd_context)
    crowded.run(asyncio.run, m["keeps_calling"](sets_then_calls))
    m["copies"]()
    asyncio.run(m["offloads"]())
    asyncio.run(m["gen_across_tasks"]())
    asyncio.run(m["fans"]())
    ready_a, ready_b, turn_a, turn_b = (threading.Event() for _ in range(4))
    ta = threading.Thread(target=m["turn"], args=(ready_a, turn_a, turn_b, 3))
    tb = threading.Thread(target=m["turn"], args=(ready_b, turn_b, turn_a, 3))
    ta.start(); ready_a.wait(); tb.start(); ready_b.wait()
    turn_a.set(); ta.join(); tb.join()
    def crowd_calls():
        before = context_sets()
        for i in range(50):
            m["crowd"](i)
        sets["crowded"] = context_sets() - before
    crowded.run(crowd_calls)

    S.sample_ppm = 0            # every new session is sampled out ...
    m["outer"]([5])
    S.sample_ppm = 1_000_000
    S.on = False                # ... and nothing is recorded while paused
    m["outer"]([6])
    S.on = True

    # Agent trouble is counted, never raised: a frame whose fields are not what they should be
    # (the C twin's int fields take ints only; an object field takes anything).
    frame = recorder.open_call(m_fid := recorder.register_function(
        "probe", "broken", "probe.py", 1, (), "function"), ())
    frame[recorder.YIELDED] = object()
    recorder.close_call(frame, None)
    recorder._set(None)

    n, data, threads = recorder.take_calls()
    records = sorted(wire._records(n, data))  # by call id: threads close in any order
    assert len(threads) >= 2, threads  # main and others (a finished thread's ident is reused)
    names = {i: f"{d[0]}:{d[1]}" for i, d in enumerate(recorder._functions) if d}
    base = min(r[0] for r in records)
    def sid(i):
        return None if i == 0 else recorder._strings[i]
    out = [[r[0] - base, r[1] - base if r[1] else None, r[2] - base, names[r[3]], names.get(r[4]),
            sid(r[5]), sid(r[6]), wire.RESULT_NAMES[r[7]], sid(r[8]), r[10] >= r[9] > 0]
           for r in records]
    counters = {k: getattr(S, k) for k in ("agent_errors", "dropped", "sampled_out")}
    json.dump({"accelerated": recorder.ACCELERATED, "records": out, "counters": counters,
               "starts": len(S.session_starts), "context_sets": sets}, sys.stdout,
              default=list)
''')


def run_probe(pure: bool) -> dict:
    return run_twin_probe(PROBE, pure)


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    return {"pure": run_probe(True), "default": run_probe(False)}


def test_the_accelerator_is_built_where_a_compiler_exists() -> None:
    """A silently skipped build (optional=True) must not go unnoticed where it could build."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: the pure-Python twin is the expected hot path")
    if os.environ.get("FLOWAGENT_PURE"):
        pytest.skip("FLOWAGENT_PURE is set for this test run")
    assert recorder.ACCELERATED, (
        f"{recorder.HOT_PATH} -- rebuild with: pip install -e . (scripts/_env.sh does it)")


def test_flowagent_pure_forces_the_python_twin(probes: dict[str, dict]) -> None:
    assert probes["pure"]["accelerated"] is False
    assert probes["default"]["accelerated"] is recorder.ACCELERATED


def test_both_twins_record_the_same(probes: dict[str, dict]) -> None:
    pure, default = probes["pure"], probes["default"]
    assert default["records"] == pure["records"]
    assert default["counters"] == pure["counters"]
    assert default["starts"] == pure["starts"]


def test_what_the_probe_recorded(probes: dict[str, dict]) -> None:
    records = probes["pure"]["records"]
    by_name: dict[str, list] = {}
    for r in records:
        by_name.setdefault(r[3], []).append(r)
    assert all(r[9] for r in records)  # 0 < t0 <= t1
    # nesting, output shapes, a handled error makes its callers partial
    outer = by_name["probe:outer"][0]
    assert outer[5:9] == [["list[int]"], "list[int|str]", "partial", None]
    boom = [r for r in by_name["probe:boom"] if r[1] is not None][0]
    assert boom[3:9] == ["probe:boom", "probe:handled", ["int"], None, "error", "ValueError"]
    handled = by_name["probe:handled"][0]
    assert handled[1] == outer[0] and handled[7] == "partial"
    # a top-level error is its own session
    top = [r for r in by_name["probe:boom"] if r[1] is None][0]
    assert top[0] == top[2] and top[7] == "error"
    # generators: the call spans the iteration; closing one early is not an error
    gens = by_name["probe:gen"][:2]  # consume()'s two
    assert [g[6] for g in gens] == ["Iterator[int]", "Iterator[int]"]
    assert {g[7] for g in gens} == {"success"}
    # asyncio: the child task nests under the call that created it
    parent = by_name["probe:parent"][0]
    child = by_name["probe:child"][0]
    assert child[1] == parent[0] and child[2] == parent[2]
    # sampled-out and paused sessions record nothing; agent trouble is counted
    assert len(by_name["probe:outer"]) == 2  # main thread's and the thread's, not [5] or [6]
    assert probes["pure"]["counters"] == {"agent_errors": 1, "dropped": 0, "sampled_out": 1}


def _children(records: list, cid: int) -> list[str]:
    return [r[3] for r in records if r[1] == cid]


def test_calls_nest_as_their_context_was_copied(probes: dict[str, dict]) -> None:
    """The reference semantics (pure twin: real ContextVar.set calls), which the C twin's
    in-place writes must reproduce record for record (test_both_twins_record_the_same)."""
    records = probes["pure"]["records"]

    def one(name: str) -> list:
        found = [r for r in records if r[3] == name]
        assert len(found) == 1, (name, found)
        return found[0]

    # a task created inside a call nests under it, even while the creator is in another call
    spawner = one("probe:spawner")
    assert sorted(_children(records, spawner[0])) == [
        "probe:add", "probe:add", "probe:child", "probe:pause"]
    child = next(r for r in records if r[3] == "probe:child" and r[1] == spawner[0])
    assert _children(records, child[0]) == ["probe:add"]
    # the child set a variable of its own (its own HAMT, still sharing the holder or the
    # nodes above it with the parent's) while the parent went on calling
    kept = [r for r in records if r[3] == "probe:keeps_calling"]
    assert len(kept) == 2  # in a plain and in a crowded context
    assert all(sorted(_children(records, r[0])) == ["probe:add"] * 3 + ["probe:pause"]
               for r in kept)
    # copy_context() in sync code: a copy keeps the call that was current when it was made
    copies, capture = one("probe:copies"), one("probe:capture")
    assert sorted(_children(records, copies[0])) == ["probe:add", "probe:add", "probe:capture"]
    assert _children(records, capture[0]) == ["probe:add", "probe:add"]
    # run_in_executor does not carry the context (a session of its own); to_thread does
    offloads = one("probe:offloads")
    assert _children(records, offloads[0]) == ["probe:add", "probe:add"]
    assert len([r for r in records if r[3] == "probe:add" and r[1] is None]) == 1
    # a generator resumed in another task still nests its calls under itself
    across = one("probe:gen_across_tasks")
    assert sorted(_children(records, across[0])) == ["probe:gen", "probe:resumes"]
    gen = next(r for r in records if r[3] == "probe:gen" and r[1] == across[0])
    assert _children(records, gen[0]) == ["probe:add"] * 4
    # gather: every task under the call that created it, in its session
    fans = one("probe:fans")
    fan_calls = [r for r in records if r[1] == fans[0]]
    assert [r[3] for r in fan_calls] == ["probe:fan"] * 40
    assert all(r[2] == fans[2] and _children(records, r[0]) == ["probe:add"] for r in fan_calls)
    # two threads taking turns: each thread's calls under its own call
    turns = [r for r in records if r[3] == "probe:turn"]
    assert len(turns) == 2 and all(r[1] is None for r in turns)
    assert all(_children(records, r[0]) == ["probe:add"] * 3 for r in turns)
    # a context with a hundred variables: still one session per top-level call
    crowd = [r for r in records if r[3] == "probe:crowd"]
    assert len(crowd) == 50 and all(r[1] is None and r[0] == r[2] for r in crowd)
    assert all(_children(records, r[0]) == ["probe:add"] for r in crowd)


@pytest.mark.skipif(not recorder.ACCELERATED, reason="the C accelerator is not built")
def test_the_current_call_is_written_in_place(probes: dict[str, dict]) -> None:
    """Where CPython's context structures are mirrored, a program whose contexts are not
    shared makes no ContextVar.set per call (the C hot path's main saving): at most the
    first write in a context is one, also when the variable sits in a sub-node."""
    from flowagent.agent import _speedups

    mirrored = (3, 11) <= sys.version_info[:2] <= (3, 13) \
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
    assert _speedups.IN_PLACE == mirrored, _speedups.IN_PLACE_WHY
    if not mirrored:
        pytest.skip(f"every write is a ContextVar.set here: {_speedups.IN_PLACE_WHY}")
    sets = probes["default"]["context_sets"]
    assert sets["hot loop"] <= 1 and sets["crowded"] <= 1, sets


def test_the_shape_budget(probes: dict[str, dict]) -> None:
    """The first calls of a function are shaped, then 1 in SHAPE_EVERY, then 1 in
    SHAPE_HOT_EVERY once it is hot (recorder's docstring)."""
    hot = [r for r in probes["pure"]["records"] if r[3] == "probe:hot"]
    shaped = [i for i, r in enumerate(hot, 1) if r[5] is not None]
    expected = [i for i in range(1, 3001) if i <= recorder.SHAPE_FIRST
                or (i % recorder.SHAPE_EVERY == 0 if i <= recorder.SHAPE_WARM
                    else i % recorder.SHAPE_HOT_EVERY == 0)]
    assert shaped == expected
    assert all(r[5] == ["int"] and r[6] == "int" for r in hot if r[5] is not None)
    assert all(r[6] is None for r in hot if r[5] is None)


@pytest.mark.skipif(not recorder.ACCELERATED, reason="the C accelerator is not built")
def test_accelerated_call_block_is_the_wire_format() -> None:
    """The accelerator's packed buffer and wire.columns write the same call block."""
    from flowagent.agent import _speedups

    fid = recorder.register_function("m", "f", "m.py", 1, ("a",), "function")
    saved_on, recorder.S.on = recorder.S.on, True
    try:
        recorder.take_calls()
        for n in (0, 1, 7, 8, 9, 600):
            for i in range(n):
                root = recorder.open_call(fid, (i,))
                recorder.close_call(recorder.open_call(fid, ("x",)), ValueError)
                recorder.close_call(root, None)
            count, data, threads = _speedups.take_calls()
            records = wire._records(count, data)
            assert count == 2 * n and len(records) == count
            assert wire.columns(wire.pack_records(records)) == data
            assert threads == ({recorder._ident()} if n else set())
    finally:
        recorder.S.on = saved_on
        recorder._set(None)
        del recorder.S.session_starts[:]


@pytest.mark.parametrize("limit", [0, 1, 7, 8, 13, 512, 1000])
def test_call_block_carries_each_record_in_takes_of_any_size(limit: int) -> None:
    """Both twins' call blocks, taken whole or ``limit`` records at a time, decode to the
    calls made: ids, callers, results, thread and times field by field, so a block written
    in the wrong byte order or with a wrong delta at a take's or an 8-record group's edge
    cannot pass as a re-encoding of itself."""
    fid = recorder.register_function("m", "g", "m.py", 2, ("a",), "function")
    saved_on, recorder.S.on = recorder.S.on, True
    try:
        recorder.take_calls()
        t_before = recorder._clock()
        for i in range(700):
            root = recorder.open_call(fid, (i,))
            recorder.close_call(recorder.open_call(fid, ("x",)), ValueError)
            recorder.close_call(root, None)
        t_after = recorder._clock()
        records: list[tuple[int, ...]] = []
        while True:
            count, data, threads = recorder.take_calls(limit)
            records += wire._records(count, data)
            assert threads == ({recorder._ident()} if count else set())
            if limit == 0 or count < limit:
                break
        assert len(records) == 1400
        assert recorder.take_calls()[0] == 0
        f = {name: i for i, name in enumerate(wire.CALL_FIELDS)}
        first = records[1][f["cid"]]
        for k in range(700):
            inner, root = records[2 * k], records[2 * k + 1]
            assert root[f["cid"]] == first + 2 * k and inner[f["cid"]] == first + 2 * k + 1
            assert (root[f["par"]], root[f["ses"]], root[f["pfid"]]) == (0, root[f["cid"]], 0)
            assert (inner[f["par"]], inner[f["ses"]]) == (root[f["cid"]], root[f["cid"]])
            assert root[f["fid"]] == inner[f["fid"]] == inner[f["pfid"]] == fid
            assert (root[f["res"]], inner[f["res"]]) == (wire.PARTIAL, wire.ERROR)
            assert recorder._strings[inner[f["exc"]]] == "ValueError" and root[f["exc"]] == 0
            for r in (inner, root):
                assert t_before <= r[f["t0"]] <= r[f["t1"]] <= t_after
                assert r[f["thr"]] == recorder._ident()
            assert root[f["t0"]] <= inner[f["t0"]] and inner[f["t1"]] <= root[f["t1"]]
    finally:
        recorder.S.on = saved_on
        recorder._set(None)
        del recorder.S.session_starts[:]
