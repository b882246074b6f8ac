"""Values walked again: the C walk keeps, per value address, the words it mixed and every read
its result depends on (types and plans, dict tags, instance dicts, list and tuple lengths and
the items sampled), and takes the words again while every read still holds.

The reuse is an optimisation only: every fingerprint must be what a fresh walk gives. So each
test fingerprints a value twice (walked, then taken again), changes something inside it in
one way, and holds the C digest of the changed value to the digest of an equal value that was
never walked (a fresh copy), to ``shapes.fingerprint`` and to ``shape_of``.
"""

from __future__ import annotations

import dataclasses
import gc
import typing

import pytest

from helpers import fresh_copy, same_as_fresh


def _speedups() -> typing.Any:
    try:
        from flowagent.agent import _speedups
    except ImportError:
        pytest.skip("the C accelerator is not built here")
    if not _speedups.shape_cache_stats()["record_reuse"]:
        pytest.skip(_speedups.record_reuse_why()[0])
    return _speedups


def _values_reused() -> int:
    return int(_speedups().shape_cache_stats()["values_reused"])


def _walk_twice(value: object, instances: bool = False) -> None:
    """Walked, then taken again: what follows changes a value whose walk is kept. A value
    holding instances is kept only where instance dict tags are proven (not on 3.13)."""
    sp = _speedups()
    sp.fingerprint(value)  # its classes planned (a walk that plans one is not kept)
    first = sp.fingerprint(value)
    assert first is not None
    before = _values_reused()
    assert sp.fingerprint(value) == first
    kept = not instances or bool(sp.shape_cache_stats()["record_reuse_attrs"])
    assert _values_reused() == before + kept


@dataclasses.dataclass
class Product:
    sku: str
    price: float
    tags: list[str]


@dataclasses.dataclass
class Line:
    product: Product
    qty: int


@dataclasses.dataclass
class Cart:
    user: str
    lines: list[Line]
    coupon: str | None = None


@dataclasses.dataclass
class OtherLine:
    product: Product
    qty: int


class Point(typing.NamedTuple):
    x: object
    y: object


def _cart() -> Cart:
    return Cart("u", [Line(Product(f"S-{i}", 1.5, ["a"]), i) for i in range(3)])


def test_an_unchanged_value_is_taken_again_and_equals_a_fresh_walk() -> None:
    cart = _cart()
    _walk_twice(cart, instances=True)
    same_as_fresh(cart)


def test_a_list_item_replaced_is_seen() -> None:
    items: list[object] = [{"a": 1}, {"a": 2}]
    for new in ({"b": 1}, "a str", 3, [1], None, (1, "x")):
        _walk_twice(items)
        items[0] = new
        same_as_fresh(items)


def test_a_list_grown_or_shrunk_is_seen() -> None:
    items: list[object] = [1, 2, 3]
    changes: list[typing.Callable[[], object]] = [
        lambda: items.append("four"),
        lambda: items.pop(),
        lambda: items.insert(0, 1.5),
        lambda: items.extend(["x"] * 10),   # now sampled from both ends
        lambda: items.insert(0, None),       # the sampled head moves by one
        lambda: items.__setitem__(slice(4, 9), [b"b"] * 5),  # the middle: not sampled
        lambda: items.clear(),
    ]
    for change in changes:
        _walk_twice(items) if items else None
        change()
        same_as_fresh(items)


def test_a_value_deep_inside_is_seen() -> None:
    cart = _cart()
    changes: list[typing.Callable[[], object]] = [
        lambda: setattr(cart.lines[0], "qty", "3"),            # an instance dict's tag
        lambda: cart.lines[1].product.tags.append(1),          # below the cut: no change
        lambda: setattr(cart.lines[2], "product", None),
        lambda: cart.lines.append(Line(Product("S", 1.0, []), 1)),
        lambda: setattr(cart, "coupon", "SAVE5"),
        lambda: setattr(cart, "lines", []),
    ]
    for change in changes:
        _walk_twice(cart, instances=True)
        change()
        same_as_fresh(cart)


def test_a_dict_inside_a_list_inside_a_dict_is_seen() -> None:
    request = {"id": 1, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}
    changes: list[typing.Callable[[], object]] = [
        lambda: request["items"][0].__setitem__("qty", "one"),  # type: ignore[index]
        lambda: request["items"][1].pop("sku"),                 # type: ignore[index]
        lambda: request.__setitem__("id", None),
        lambda: request["items"].append({"sku": "c"}),          # type: ignore[attr-defined]
    ]
    for change in changes:
        _walk_twice(request)
        change()
        same_as_fresh(request)


def test_a_list_inside_a_tuple_and_a_named_tuple_is_seen() -> None:
    inner: list[object] = [1]
    pair = (inner, "x")
    point = Point(inner, 2)
    for value in (pair, point):
        _walk_twice(value)
        inner.append("s")
        same_as_fresh(value)
        inner.pop()


def test_an_instance_whose_class_is_replaced_is_seen() -> None:
    cart = _cart()
    _walk_twice(cart, instances=True)
    cart.lines[0].__class__ = OtherLine  # type: ignore[assignment]
    same_as_fresh(cart)
    _walk_twice(cart, instances=True)
    cart.lines[0].__class__ = Line
    same_as_fresh(cart)


def test_a_class_changed_after_the_walk_is_seen() -> None:
    @dataclasses.dataclass
    class Item:
        name: str
        qty: int

    value = [Item("a", 1)]
    _walk_twice(value, instances=True)
    Item.note = "a class attribute"  # type: ignore[attr-defined]  # a new version tag
    same_as_fresh(value)
    _walk_twice(value, instances=True)
    Item.__dataclass_fields__.pop("qty")  # edited in place: a watched marker dict's size
    same_as_fresh(value)


def test_a_new_value_at_a_freed_address_is_walked_afresh() -> None:
    fp = _speedups().fingerprint
    shapes_seen = [({"a": [1]}, {"a": ["s"]}), ([1, 2], ["x", 2]), ((1, [2]), (1, ["y"]))]
    for first, second in shapes_seen:
        for _ in range(20):
            value = fresh_copy(first)
            fp(value)
            fp(value)
            del value
            gc.collect()
            value = fresh_copy(second)  # often at the address just freed
            assert fp(value) == fp(fresh_copy(second))
            del value


def test_a_value_holding_a_set_is_not_taken_again() -> None:
    fp = _speedups().fingerprint
    value = {"tags": {1, 2}, "n": 1}
    fp(value)
    before = _values_reused()
    fp(value)
    assert _values_reused() == before
    value["tags"].add("x")  # type: ignore[attr-defined]
    same_as_fresh(value)
