"""How the C fingerprint walk reads values, against its pure-Python statement and the shapes.

The C walk reads containers in place without taking references, keeps runs of scalars as
packed codes mixed a word at a time, starts again from the top when it had to plan a class
on the way (planning runs Python code), and reads an instance's fields by name only from a
dict whose keys are all exact strs. Each of these must leave the rule unchanged: two values
get equal C fingerprints exactly when ``shapes.fingerprint`` gives them equal keys, equal
fingerprints mean equal shapes, and both refuse the same values.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing

import pytest

from flowagent.agent import shapes
from flowagent.agent.shapes import shape_of


def _c_fingerprint() -> typing.Callable[[object], object]:
    try:
        from flowagent.agent import _speedups
    except ImportError:
        pytest.skip("the C accelerator is not built here")
    return _speedups.fingerprint


def _agree(values: list[object]) -> None:
    """The C digest and the Python key partition ``values`` the same way, and agree with
    ``shape_of`` where they call two values the same."""
    fp = _c_fingerprint()
    c = [fp(v) for v in values]
    py = [shapes.fingerprint(v) for v in values]
    for v, a, b in zip(values, c, py):
        assert (a is None) == (b is None), (v, a, b)
    for (i, v), (j, w) in itertools.product(enumerate(values), repeat=2):
        if c[i] is not None and c[j] is not None:
            assert (c[i] == c[j]) == (py[i] == py[j]), (v, w)
            if c[i] == c[j]:
                assert shape_of(v) == shape_of(w), (v, w)


def _long_run(at: int | None) -> list[object]:
    """A value whose walk meets 22 scalars in a row (8 in the innermost list, then 7 after
    each list closes), with a str instead of an int at position ``at``."""
    codes: list[object] = [1] * 22
    if at is not None:
        codes[at] = "s"
    inner = codes[:8]
    middle = [inner, *codes[8:15]]
    return [middle, *codes[15:22]]


def test_scalar_runs_longer_than_a_word_are_told_apart() -> None:
    values = [_long_run(None)] + [_long_run(at) for at in (0, 7, 8, 14, 15, 19, 20, 21)]
    _agree(values)
    fp = _c_fingerprint()
    digests = [fp(v) for v in values]
    assert None not in digests
    assert len(set(digests)) == len(values)


def test_scalars_and_structures_interleaved() -> None:
    values: list[object] = [
        [1, 2, [3]], [1, [2], 3], [[1], 2, 3], [1, 2, 3], [1, 2, [3], []], [1, 2, [], [3]],
        (1, "a"), ("a", 1), (1, ("a",)), ((1,), "a"),
        {"a": 1, "b": [2]}, {"a": [1], "b": 2}, {"a": 1, "b": 2},
        {1: 2, 3: 4}, {1: 2, 3: "4"}, {1: (2,), 3: 4},
        [None] * 8, [None] * 7 + [True], [b"x", 1j, 1.5, True, None, "s", 1],
    ]
    _agree(values)


def test_a_class_first_met_inside_a_value_is_planned_and_the_value_walked_again() -> None:
    fp = _c_fingerprint()

    @dataclasses.dataclass
    class FirstSeenDeep:
        a: int
        b: str

    @dataclasses.dataclass(frozen=True)
    class FirstSeenInASet:
        a: int

    deep = [{"k": [FirstSeenDeep(1, "x")]}]
    in_set = {FirstSeenInASet(1)}
    first = [fp(deep), fp(in_set)]  # each plans its class on the way: walked again
    assert None not in first
    assert [fp(deep), fp(in_set)] == first
    _agree([deep, [{"k": [FirstSeenDeep(2, "y")]}], [{"k": [FirstSeenDeep("1", "x")]}],
            in_set, {FirstSeenInASet("1")}])


@dataclasses.dataclass
class Rec:
    a: int
    b: str


def test_instance_fields_read_in_place_or_by_name() -> None:
    plain = Rec(1, "x")
    extra = Rec(1, "x")
    extra.c = 3  # type: ignore[attr-defined]  # more keys than fields: read by name
    reordered = Rec.__new__(Rec)
    reordered.b = "x"
    reordered.a = 1  # the fields in another order: read by name
    odd_key = Rec(1, "x")
    odd_key.__dict__[1] = "not a str key"  # looked up by name only among exact-str keys
    fp = _c_fingerprint()
    assert fp(odd_key) is None
    assert shapes.fingerprint(odd_key) is None
    assert fp(plain) is not None and fp(extra) is not None and fp(reordered) is not None
    assert shape_of(plain) == shape_of(extra) == shape_of(reordered)
    _agree([plain, extra, reordered, odd_key, Rec("1", "x"), [plain, extra]])


def test_a_value_walked_while_its_containers_are_shared() -> None:
    """Elements borrowed from their containers: the same objects met again and again in one
    walk (no references taken, none released) leave every count as it was."""
    import sys

    shared = {"k": [1, 2]}
    value = [shared] * 8 + [(shared, shared)]
    before = (sys.getrefcount(shared), sys.getrefcount(shared["k"]))
    fp = _c_fingerprint()
    for _ in range(100):
        fp(value)
    assert (sys.getrefcount(shared), sys.getrefcount(shared["k"])) == before
    _agree([value, [shared] * 8, [dict(shared)] * 8])
