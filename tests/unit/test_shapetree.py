"""Unit tests for flowagent.reports.shapetree: parse ⇄ render, errors, merging."""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import json
import keyword
import sys
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowagent.agent.shapes import shape_of
from flowagent.reports.shapetree import (
    Container, Field, FieldStats, MappingShape, Name, Record, ShapeSyntaxError, TupleShape,
    Union, Unknown, merge_inputs, merge_shapes, parse, render,
)

# --------------------------------------------------------------------------------------------
# Sample classes (module level: short qualnames)


@dataclasses.dataclass
class Item:
    sku: object
    qty: object


@dataclasses.dataclass
class Empty:
    pass


@dataclasses.dataclass(slots=True, repr=False)  # repr would read the unset slot
class Slotted:
    a: int


UNSET = object.__new__(Slotted)  # its slot was never set: shape_of shows "Slotted{a:?}"


class Point(typing.NamedTuple):
    x: object
    y: object


class Color(enum.Enum):
    RED = 1


class Outer:
    class Inner:
        pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyTuple(tuple):  # type: ignore[type-arg]
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


def _local_class() -> type:
    class Local:
        pass

    return Local


Local = _local_class()


# --------------------------------------------------------------------------------------------
# parse: exact trees

I, S = Name("int"), Name("str")


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("int", I),
        ("Outer.Inner", Name("Outer.Inner")),
        ("_local_class.<locals>.Local", Name("_local_class.<locals>.Local")),
        ("HTTP 200", Name("HTTP 200")),
        ("any", Name("any")),
        ("function", Name("function")),
        ("module", Name("module")),
        ("?", Unknown("?")),
        ("...", Unknown("...")),
        ("int|str", Union((I, S))),
        ("type[Cart]", Container("type", Name("Cart"))),
        ("Iterator[int]", Container("Iterator", I)),
        ("AsyncIterator[str|int]", Container("AsyncIterator", Union((S, I)))),
        ("list[]", Container("list", None)),
        ("frozenset[int|...]", Container("frozenset", Union((I, Unknown("..."))))),
        ("MyList[int]", Container("MyList", I)),
        ("tuple[]", TupleShape("tuple", ())),
        ("tuple[int, str]", TupleShape("tuple", (I, S))),
        ("tuple[int]", TupleShape("tuple", (I,))),
        ("tuple[int|str, ...]", TupleShape("tuple", (Union((I, S)),), variadic=True)),
        ("MyTuple[int, str, int]", TupleShape("MyTuple", (I, S, I))),
        ("MyTuple[int, ...]", TupleShape("MyTuple", (I,), variadic=True)),
        ("dict[str, int]", MappingShape("dict", S, I)),
        ("dict[str, ...]", MappingShape("dict", S, Unknown("..."))),
        ("defaultdict[str, list[int]]",
         MappingShape("defaultdict", S, Container("list", I))),
        ("MyDict[int, str]", MappingShape("MyDict", I, S)),
        ("dict{}", Record("dict", ())),
        ("dict{a:int,b:str|None}",
         Record("dict", (Field("a", I), Field("b", Union((S, Name("None"))))))),
        ("dict{email?:str}", Record("dict", (Field("email", S, optional=True),))),
        ("Cart{x:int}", Record("Cart", (Field("x", I),))),
        ("Cart{x:int,...}", Record("Cart", (Field("x", I),), truncated=True)),
        ("Point(x:int,y:int)", Record("Point", (Field("x", I), Field("y", I)), "()")),
        ("Point()", Record("Point", (), "()")),
        ("list[dict{a:?}]", Container("list", Record("dict", (Field("a", Unknown("?")),)))),
    ],
)
def test_parse_exact_trees(text: str, tree: object) -> None:
    assert parse(text) == tree
    assert render(parse(text)) == text


def test_parse_is_lenient_about_spaces_and_renders_canonically() -> None:
    assert render(parse(" dict[ str ,int ] ")) == "dict[str, int]"
    assert render(parse("dict{ a : int , b:str }")) == "dict{a:int,b:str}"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("list[", 5),
        ("list[int", 8),
        ("list[int]]", 9),
        ("dict{a}", 6),
        ("dict{a:int", 10),
        ("dict{a:int,...,b:int}", 15),
        ("dict{:int}", 5),
        ("int?", 0),
        ("a|", 2),
        ("[int]", 0),
        ("...[int]", 3),
        ("int str", 4),
        ("tuple[int; str]", 11),
        ("list[" * 100 + "int" + "]" * 100, 325),
    ],
)
def test_malformed_shapes_raise_value_error_with_position(text: str, position: int) -> None:
    with pytest.raises(ValueError, match=f"position {position}:") as caught:
        parse(text)
    assert isinstance(caught.value, ShapeSyntaxError)
    assert caught.value.position == position


def test_non_string_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse(None)  # type: ignore[arg-type]


@given(st.text(alphabet="[]{}(),:|? .abcint" + "\x00é", max_size=40))
@settings(max_examples=500)
def test_arbitrary_text_parses_or_raises_value_error_only(text: str) -> None:
    try:
        tree = parse(text)
    except ValueError:
        return
    assert parse(render(tree)) == tree  # whatever parses, re-parses to the same tree


# --------------------------------------------------------------------------------------------
# render(parse(s)) == s for everything shape_of writes

_identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True).filter(
    lambda k: not keyword.iskeyword(k))
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
    st.binary(max_size=2), st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.sampled_from([Color.RED, Outer.Inner(), Local(), Item, Empty(), shape_of, json,
                     len, ..., MyDict, UNSET]),
)
_hashables = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.booleans())


def _extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(children, max_size=10),
        st.lists(children, max_size=7).map(tuple),
        st.lists(children, max_size=3).map(MyTuple),
        st.lists(children, max_size=3).map(MyList),
        st.lists(children, max_size=9).map(collections.deque),
        st.sets(_hashables, max_size=10),
        st.frozensets(_hashables, max_size=3),
        st.dictionaries(_identifiers, children, max_size=18),
        st.dictionaries(st.one_of(st.integers(), st.text(max_size=2)), children, max_size=3),
        st.dictionaries(_identifiers, children, max_size=3).map(collections.OrderedDict),
        st.dictionaries(st.integers(), children, max_size=3).map(
            lambda d: collections.defaultdict(list, d)),
        st.builds(Item, children, children),
        st.builds(Point, children, children),
    )


_values = st.recursive(_scalars, _extend, max_leaves=40)


@given(_values)
@settings(max_examples=800, deadline=None)
def test_round_trip_of_real_shapes(value: object) -> None:
    text = shape_of(value)
    assert render(parse(text)) == text


def test_round_trip_of_cycles_cuts_and_unreadable_fields() -> None:
    assert shape_of(UNSET) == "Slotted{a:?}"
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    deep = {"a": {"b": {"c": {"d": [1]}}}}
    wide: list[object] = [*range(5), [[[[]]]]]
    for value in (cyclic, deep, wide, tuple(range(9)), sys.version_info, [1] * 100):
        text = shape_of(value)
        assert render(parse(text)) == text, text


# --------------------------------------------------------------------------------------------
# merge_shapes / merge_inputs


def test_merge_records_marks_optional_fields_with_counts() -> None:
    merged = merge_shapes({
        "dict{id:int,name:str}": 5,
        "dict{email:str,id:int,name:str}": 3,
        "dict{email:None,id:int,name:str}": 1,
    })
    assert merged.text == "dict{email?:None|str,id:int,name:str}"
    assert (merged.variants, merged.calls) == (3, 9)
    assert merged.fields == (
        FieldStats("email", "None|str", optional=True, variants=2, calls=4),
        FieldStats("id", "int", optional=False, variants=3, calls=9),
        FieldStats("name", "str", optional=False, variants=3, calls=9),
    )
    assert parse(merged.text) == merged.shape


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"int": 1}, "int"),
        ({"str": 2, "int": 1, "None": 1}, "None|int|str"),
        ({"list[int|...]": 1, "list[str]": 1}, "list[int|str|...]"),
        ({"list[]": 4, "list[int]": 1}, "list[int]"),
        ({"list[dict{a:int}|dict{b:int}]": 1}, "list[dict{a?:int,b?:int}]"),
        ({"dict{user:dict{id:int}}": 1, "dict{user:dict{id:str,name:str}}": 1},
         "dict{user:dict{id:int|str,name?:str}}"),
        ({"dict{a:int}|None": 1, "dict{a:int,b:str}": 1}, "None|dict{a:int,b?:str}"),
        ({"dict{a?:int}": 1, "dict{a:int}": 7}, "dict{a?:int}"),
        ({"tuple[int, str]": 1, "tuple[str, str]": 1, "tuple[int, ...]": 1},
         "tuple[int, ...]|tuple[int|str, str]"),
        ({"dict[int, str]": 1, "dict[str, list[int]]": 1}, "dict[int|str, list[int]|str]"),
        ({"Cart{b:int,a:int}": 1, "Cart{b:int,c:int,a:int}": 1},
         "Cart{b:int,c?:int,a:int}"),  # declaration order, not sorted
        ({"Cart{a:int}": 1, "Cart{a:int,...}": 1}, "Cart{a:int,...}"),
        ({"Point(x:int)": 1, "Point{x:int}": 1}, "Point(x:int)|Point{x:int}"),
        ({"int": 1, "any": 1}, "any"),
        ({"Iterator[...|int]": 1, "Iterator[str]": 1}, "Iterator[int|str|...]"),
        ({"HTTP 200": 3, "HTTP 404": 1}, "HTTP 200|HTTP 404"),
    ],
)
def test_merge_shapes_exact(counts: dict[str, int], expected: str) -> None:
    merged = merge_shapes(counts)
    assert merged.text == expected
    assert render(parse(expected)) == expected


def test_merge_fields_only_for_a_single_top_level_record() -> None:
    assert merge_shapes({"dict{a:int}": 2, "None": 1}).fields == (
        FieldStats("a", "int", False, 1, 2),)
    assert merge_shapes({"Cart{a:int}": 1, "dict{a:int}": 1}).fields == ()
    assert merge_shapes({"list[int]": 1}).fields == ()


def test_merge_is_independent_of_order() -> None:
    counts = {"dict{a:int,b:str}": 1, "dict{b:None,c:list[int]}": 2, "Cart{z:int,y:int}": 1,
              "Cart{z:int,x:int,y:int}": 3, "tuple[int, str]": 1, "None": 1}
    results = {merge_shapes(dict(p)) for p in itertools.permutations(counts.items())}
    assert len(results) == 1


@given(st.lists(_values.map(shape_of), min_size=1, max_size=4), _values.map(shape_of))
@settings(max_examples=300, deadline=None)
def test_merge_is_associative_commutative_and_idempotent(texts: list[str], other: str) -> None:
    merged = merge_shapes(dict.fromkeys(texts, 1)).text
    assert merge_shapes({merged: 1}).text == merged
    assert render(parse(merged)) == merged
    everything = merge_shapes(dict.fromkeys([*texts, other], 1)).text
    assert merge_shapes({merged: 1, other: 1}).text == everything
    assert merge_shapes({other: 1, merged: 1}).text == everything


def test_merge_rejects_nothing_and_malformed() -> None:
    with pytest.raises(ValueError, match="no shapes"):
        merge_shapes({})
    with pytest.raises(ValueError, match="position 5"):
        merge_shapes({"int": 1, "list[": 1})


def test_merge_inputs_per_parameter() -> None:
    counts = {
        json.dumps(["int", "dict{a:int}"]): 2,
        json.dumps(["str", "dict{a:int,b:str}"]): 1,
        json.dumps(["int"]): 1,  # a short list: payload not covered by this variant
    }
    assert merge_inputs(["x", "payload", "*args"], counts) == {
        "x": "int|str", "payload": "dict{a:int,b?:str}"}


@pytest.mark.parametrize("bad", ["not json", "{}", '["int", 3]', "null"])
def test_merge_inputs_rejects_corrupt_variants(bad: str) -> None:
    with pytest.raises(ValueError, match="input variant"):
        merge_inputs(["x"], {bad: 1})
