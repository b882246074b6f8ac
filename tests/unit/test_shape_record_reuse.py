"""Records read once per dict state: the C walk reuses what it read from a dict (its key set
and values) while the dict's version tag is unchanged, and from an instance's dict under the
same class plan.

The reuse is an optimisation only: every fingerprint must be what a fresh read gives. So each
test fingerprints a value, changes it in place in one way (a value of another type, a key
added, removed or replaced, the dict cleared and refilled, an attribute set from warmed-up
bytecode), and holds the C digest of the changed value to the digest of an equal value that
was never read (a fresh copy), to ``shapes.fingerprint`` and to ``shape_of``.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import typing

import pytest

from flowagent.agent import shapes
from flowagent.agent.shapes import shape_of
from helpers import fresh_copy, same_as_fresh


def _speedups() -> typing.Any:
    try:
        from flowagent.agent import _speedups
    except ImportError:
        pytest.skip("the C accelerator is not built here")
    _speedups.fingerprint({"warm": 1})  # the tags are proven on first use
    return _speedups


def _reused() -> int:
    """Records reused, and whole values whose walk was taken again (which reads no record)."""
    stats = _speedups().shape_cache_stats()
    return int(stats["records_reused"]) + int(stats["values_reused"])


def test_the_tags_are_proven_before_any_reuse() -> None:
    sp = _speedups()
    stats = sp.shape_cache_stats()
    dicts, attrs = sp.record_reuse_why()
    assert stats["record_reuse"] in (0, 1) and stats["record_reuse_attrs"] in (0, 1)
    assert dicts and attrs
    if sys.version_info < (3, 14):  # PEP 509 tags: every dict write renews them
        assert stats["record_reuse"] == 1, dicts
    if sys.version_info < (3, 13):  # an attribute set on an instance renews its dict's tag
        assert stats["record_reuse_attrs"] == 1, attrs
    if stats["record_reuse_attrs"] == 0:  # 3.13: a write through the instance's shared values
        assert "unchanged" in attrs or "no dict version tags" in attrs


def test_a_dict_read_again_unchanged_is_reused() -> None:
    sp = _speedups()
    if not sp.shape_cache_stats()["record_reuse"]:
        pytest.skip(sp.record_reuse_why()[0])
    d = {"sku": "SKU-1", "qty": 2, "tags": ["a"]}
    first = sp.fingerprint(d)
    before = _reused()
    assert sp.fingerprint(d) == first
    assert _reused() > before
    assert first == sp.fingerprint(fresh_copy(d))


def test_every_kind_of_dict_write_is_seen() -> None:
    fp = _speedups().fingerprint
    d: dict[str, object] = {"a": 1, "b": "x"}
    changes: list[typing.Callable[[], object]] = [
        lambda: d.__setitem__("a", "now a str"),
        lambda: d.__setitem__("c", 1.5),
        lambda: d.pop("c"),
        lambda: d.__delitem__("b"),
        lambda: d.setdefault("b", None),
        lambda: d.update(b=[1, 2]),
        lambda: d.popitem(),
        lambda: (d.clear(), d.update(b=1, a=2)),       # the same keys, another order
        lambda: d.__ior__({"z": (1, 2)}),
        lambda: d.__setitem__("z", {"inner": 1}),
    ]
    for change in changes:
        fp(d)
        fp(d)  # read, then reused
        change()
        same_as_fresh(d)
    for i in range(300):  # a specialized store: STORE_SUBSCR_DICT once warmed up
        fp(d)
        d["a"] = i if i % 2 else str(i)
        same_as_fresh(d)


def test_values_inside_a_reused_dict_are_walked_again() -> None:
    """A dict unchanged holds the same objects, which may have changed themselves."""
    fp = _speedups().fingerprint
    inner = {"x": 1}
    items = [1, 2]
    d = {"inner": inner, "items": items}
    fp(d)
    inner["x"] = "s"
    same_as_fresh(d)
    items.append("three")
    same_as_fresh(d)
    items[:] = []
    same_as_fresh(d)


def test_a_dict_freed_and_another_made_at_its_address() -> None:
    fp = _speedups().fingerprint
    expected = {0: fp({"a": "s"}), 1: fp({"a": 1})}
    for i in range(2000):  # the allocator hands the freed dict's memory to the next one
        d = {"a": 1} if i % 2 else {"a": "s"}
        assert fp(d) == expected[i % 2]
        del d


@dataclasses.dataclass
class Line:
    sku: object
    qty: object


def test_every_kind_of_attribute_write_is_seen() -> None:
    fp = _speedups().fingerprint
    line = Line("SKU-1", 2)
    fp(line)
    line.qty = "two"
    same_as_fresh(line)
    line.__dict__["sku"] = [1]
    same_as_fresh(line)
    object.__setattr__(line, "qty", None)  # the generic path
    same_as_fresh(line)
    for i in range(300):  # STORE_ATTR specialized once warmed up
        fp(line)
        fp(line)
        line.qty = i if i % 2 else [i]
        same_as_fresh(line)
    line.extra = 1  # type: ignore[attr-defined]  # more keys than fields: read by name
    same_as_fresh(line)
    del line.extra  # type: ignore[attr-defined]
    line.__dict__ = {"qty": 1, "sku": "s"}  # another dict, the fields in another order
    same_as_fresh(line)


def test_an_instance_read_again_unchanged_is_reused() -> None:
    sp = _speedups()
    if not sp.shape_cache_stats()["record_reuse_attrs"]:
        pytest.skip(sp.record_reuse_why()[1])
    line = Line("SKU-1", 2)
    first = sp.fingerprint(line)
    before = _reused()
    assert sp.fingerprint(line) == first
    assert _reused() > before


def test_a_class_whose_fields_change_under_a_reused_instance() -> None:
    """The reuse is tied to the class plan it was read under: a plan made again (the
    dataclass's fields dict edited in place) reads the instance again."""
    fp = _speedups().fingerprint

    @dataclasses.dataclass
    class Grows:
        a: object

    g = Grows(1)
    g.b = "x"  # type: ignore[attr-defined]
    read_once = fp(g)
    assert fp(g) == read_once  # read, then reused
    before = shape_of(g)
    b = dataclasses.field()
    b.name = "b"
    b._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
    Grows.__dataclass_fields__["b"] = b  # type: ignore[attr-defined]
    assert shape_of(g) != before  # now shown: a record of two fields
    other = Grows(1)
    other.b = "x"  # type: ignore[attr-defined]
    assert fp(g) is not None and fp(g) != read_once
    assert fp(g) == fp(other)
    assert shapes.fingerprint(g) == shapes.fingerprint(other)


def test_reuse_keeps_no_reference() -> None:
    """Reused values are borrowed from the dict that holds them: no count moves."""
    fp = _speedups().fingerprint
    value = {"k": [1, 2], "line": Line("s", 1)}
    gc.collect()
    before = [sys.getrefcount(value["k"]), sys.getrefcount(value["line"])]
    for _ in range(100):
        fp(value)
    assert [sys.getrefcount(value["k"]), sys.getrefcount(value["line"])] == before


def test_no_reuse_while_another_interpreter_exists() -> None:
    """Tags count per interpreter (3.12+): records are reused only while the main
    interpreter is the only one."""
    sp = _speedups()
    if not sp.shape_cache_stats()["record_reuse"]:
        pytest.skip(sp.record_reuse_why()[0])
    interpreters = None
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            interpreters = __import__(name)
            break
        except ImportError:
            continue
    if interpreters is None:
        pytest.skip("no module to create an interpreter with")
    d = {"a": 1, "b": [2]}
    first = sp.fingerprint(d)
    iid = interpreters.create()
    try:
        before = _reused()
        assert sp.fingerprint(d) == first
        assert _reused() == before
    finally:
        interpreters.destroy(iid)
    before = _reused()
    assert sp.fingerprint(d) == first
    assert _reused() > before
