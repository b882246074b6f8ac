"""Shapes of every call through the C shape cache: the same shape ids as the pure twin, and
the truth (``shapes.shape_of`` of each value) call after call.

The C twin keeps each function's last structured input (its fingerprint and shape id) and a
table of fingerprints seen; the pure twin describes every value afresh. A probe calls a few
functions with values whose structure stays, alternates and drifts (dict key sets, element
types, dataclass field types, a class edited in place, a list that grows past the sample,
scalars after structures and back) and records every call's input and output shape. Both
twins must record exactly what ``shape_of`` says of each value at the time of its call: a
memo or table entry that answered for another structure shows as a wrong shape here, and so
does a record reused from a dict or instance changed in place since it was read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowagent.agent import recorder
from helpers import run_twin_probe


PROBE = textwrap.dedent('''
    import json, sys
    from dataclasses import dataclass
    from flowagent.agent import bootstrap, recorder, shapes
    from flowagent.protocol import wire
    from flowagent.agent.instrument import instrument_source

    SOURCE = """
    def ident(x):
        return x
    def pair(a, b):
        return [a, b]
    def wrap(x):
        return {"value": x, "n": 1}
    """
    bootstrap.install_helpers()
    code, _ = instrument_source(SOURCE, "memo.py", "memo", recorder.register_function)
    m = {"__name__": "memo"}
    exec(code, m)
    recorder.shape_every_call()
    recorder.S.on = True

    @dataclass
    class Point:
        x: object
        y: object

    class Bag:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    expected = []
    def call(name, *args):
        ins = [shapes.shape_of(a) for a in args]
        out = m[name](*args)
        expected.append([name, ins, shapes.shape_of(out)])

    values = [
        {"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": 2.5},   # drift of a field type
        {"a": 1, "c": "x"}, {"a": 1, "b": "x"},                      # another key set, back
        [1, 2, 3], [1, "2", 3], [], [1, 2, 3],                       # element types
        list(range(8)), list(range(8)) + ["tail"],                   # past the sample: tail
        (1, 2), (1, 2, 3), (1, "2"), (1, 2, 3, 4, 5),                # positional, long
        Point(1, 2), Point(1, "2"), Point([1], {"k": None}), Point(1, 2),
        {"p": Point(1, 2)}, {"p": Point(1.0, 2)}, {"p": [Point(1, 2)]},
        {"deep": {"er": {"still": {"more": [1]}}}}, {"deep": {"er": {"still": {"more": ["1"]}}}},
        3, "s", None, {"a": 1, "b": "x"}, 3.5,                      # scalars between
        {1: "a"}, {"k": 1, "not an identifier": 2},                  # mappings
        {1, 2}, frozenset({"a"}), set(),
    ]
    for round_ in range(2):                                          # memos and tables warm
        for v in values:
            call("ident", v)
            call("wrap", v)
        for a, b in zip(values, values[1:] + values[:1]):
            call("pair", a, b)
            call("pair", a, a)                                       # alternate per function

    # A class whose instances change structure: a field added to the instance, then to the
    # class (a dataclass redefined in place keeps its name but not its fields).
    b = Bag(a=1)
    call("ident", b)
    b.c = "new"
    call("ident", b)
    Bag.extra = 1
    call("ident", b)
    p = Point(1, 2)
    call("ident", p)
    p.x = "now a str"
    call("ident", p)
    p.x = [p]                                                       # a cycle through a list
    call("ident", p)

    # The same dict and instance changed in place between calls (their records are read
    # again, not reused): a field's type, keys added and removed, an attribute's type.
    d = {"a": 1, "b": "x"}
    q = Point(1, 2)
    for i in range(40):
        call("ident", d)
        call("pair", d, q)
        call("wrap", q)
        d["a"] = i if i % 3 else str(i)
        if i % 7 == 0:
            d["k%d" % (i % 2)] = None
        if i % 11 == 0:
            d.pop("b", None)
        q.y = [i] if i % 2 else i

    n, data, _threads = recorder.take_calls()
    names = {i: d[1] for i, d in enumerate(recorder._functions) if d}
    def sid(i):
        s = recorder._strings[i] if i else None
        return list(s) if isinstance(s, tuple) else s
    got = [[names[r[3]], sid(r[5]), sid(r[6])] for r in sorted(wire._records(n, data))]
    stats = getattr(recorder._speedups, "shape_cache_stats", lambda: {})()
    json.dump({"accelerated": recorder.ACCELERATED, "got": got, "expected": expected,
               "stats": stats}, sys.stdout)
''')


def run_probe(pure: bool) -> dict:
    return run_twin_probe(PROBE, pure, timeout=120)


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    return {"pure": run_probe(True), "default": run_probe(False)}


def test_every_call_records_the_shapes_of_its_values(probes: dict[str, dict]) -> None:
    for twin, probe in probes.items():
        got, expected = probe["got"], probe["expected"]
        assert len(got) == len(expected), twin
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"{twin}: call {i} recorded {g}, its values were {e}"


def test_both_twins_record_the_same_shapes(probes: dict[str, dict]) -> None:
    assert probes["default"]["got"] == probes["pure"]["got"]


@pytest.mark.skipif(not recorder.ACCELERATED, reason="the C accelerator is not built")
def test_the_c_twin_answered_from_its_caches(probes: dict[str, dict]) -> None:
    """The probe is about the caches: most structured values were answered by them."""
    assert probes["default"]["accelerated"] is True
    stats = probes["default"]["stats"]
    assert stats["hits"] > stats["misses"] > 0
