"""Unit tests for flowagent.reports.drift: planted changes must come back as exact events."""

from __future__ import annotations

import json

import pytest

from flowagent.reports.drift import DriftEvent, Variant, drift, input_drift


def _variants(*shapes: str) -> list[Variant]:
    return [Variant(s, 10 - i, f"s{i + 1}", (i + 1) * 1000) for i, s in enumerate(shapes)]


def test_planted_add_change_remove() -> None:
    variants = _variants(
        "dict{id:int,items:list[dict{sku:str}],name:str}",
        "dict{email:str,id:int,items:list[dict{sku:str}],name:str}",  # email added
        "dict{email:str,id:str,items:list[dict{sku:int}],name:str}",  # id, items[].sku retyped
        "dict{id:str,items:list[dict{sku:int}],name:str}",  # email removed
    )
    assert drift(variants) == [
        DriftEvent("appeared", "email", None, "str", "s2", 2000),
        DriftEvent("changed", "id", "int", "str", "s3", 3000),
        DriftEvent("changed", "items[].sku", "str", "int", "s3", 3000),
        DriftEvent("disappeared", "email", "str", None, "s4", 4000),
    ]


def test_variants_are_ordered_by_first_seen() -> None:
    first, second = _variants("dict{a:int}", "dict{a:int,b:int}")
    assert drift([second, first]) == [DriftEvent("appeared", "b", None, "int", "s2", 2000)]


def test_first_variant_is_the_baseline() -> None:
    assert drift(_variants("dict{a:int}")) == []
    assert drift([]) == []


def test_new_subtree_is_one_event_and_nested_paths_are_named() -> None:
    variants = _variants(
        "dict{user:dict{id:int}}",
        "dict{user:dict{address:dict{city:str,zip:str},id:int}}",
        "dict{user:dict{address:dict{city:str},id:int}}",
    )
    assert drift(variants) == [
        DriftEvent("appeared", "user.address", None, "dict{city:str,zip:str}", "s2", 2000),
        DriftEvent("disappeared", "user.address.zip", "str", None, "s3", 3000),
    ]


def test_a_structural_change_is_one_changed_event() -> None:
    variants = _variants("dict{a:int,b:str}", "list[int]", "dict{a:int,b:str}")
    assert drift(variants) == [
        DriftEvent("changed", "", "dict{a:int,b:str}", "list[int]", "s2", 2000),
    ]


def test_optional_field_disappears_once_and_flipping_back_is_not_a_change() -> None:
    variants = _variants(
        "dict{a:int,b:int}",
        "dict{a:str}",  # b goes, a retyped
        "dict{a:int,b:int,c:int}",  # back to int: seen before, no event
        "dict{a:str,c:int}",  # b goes again: already reported
    )
    assert drift(variants) == [
        DriftEvent("changed", "a", "int", "str", "s2", 2000),
        DriftEvent("disappeared", "b", "int", None, "s2", 2000),
        DriftEvent("appeared", "c", None, "int", "s3", 3000),
    ]


def test_containers_tuples_and_unions() -> None:
    variants = _variants(
        "tuple[int, dict{a:int}]",
        "tuple[int, dict{a:int}, str]",
        "tuple[int|None, dict{a:int|str}, str]",
        "tuple[int|None, dict{a:int|str}]",
    )
    assert drift(variants) == [
        DriftEvent("appeared", "[2]", None, "str", "s2", 2000),
        DriftEvent("changed", "[0]", "int", "None|int", "s3", 3000),
        DriftEvent("changed", "[1].a", "int", "int|str", "s3", 3000),
        DriftEvent("disappeared", "[2]", "str", None, "s4", 4000),
    ]


def test_element_paths_of_lists_mappings_and_iterators() -> None:
    variants = _variants(
        "dict{by_id:dict[int, dict{n:int}],rows:Iterator[dict{x:int}]}",
        "dict{by_id:dict[str, dict{n:int}],rows:Iterator[dict{x:float}]}",
    )
    assert drift(variants) == [
        DriftEvent("changed", "by_id", "dict[int, dict{n:int}]", "dict[str, dict{n:int}]",
                   "s2", 2000),
        DriftEvent("changed", "rows[].x", "int", "float", "s2", 2000),
    ]


def test_cuts_are_not_evidence() -> None:
    variants = _variants(
        "dict{a:dict{b:int},c:int}",
        "dict{a:...,c:?}",  # cut and unreadable: no disappearance, no change
        "dict{a:dict{b:int},c:int}",
        "Cart{f0:int,...}",  # a record cut after MAX_FIELDS: missing fields are unknown
    )
    assert drift(variants) == [
        DriftEvent("changed", "", "dict{a:dict{b:int},c:int}", "Cart{f0:int,...}", "s4", 4000),
    ]
    assert drift(_variants("Cart{a:int,b:int}", "Cart{a:int,...}")) == []
    assert drift(_variants("list[dict{a:int}]", "list[dict{b:int}|...]")) == [
        DriftEvent("appeared", "[].b", None, "int", "s2", 2000),
    ]


def test_input_drift_per_parameter() -> None:
    variants = _variants(
        json.dumps(["int", "dict{user:dict{id:int}}"]),
        json.dumps(["int", "dict{user:dict{id:str}}"]),
        json.dumps(["int|None"]),  # payload not in this variant's list
        json.dumps(["int", "dict{note:str,user:dict{id:str}}", "tuple[int]"]),
    )
    assert input_drift(["x", "payload", "*args"], variants) == [
        DriftEvent("changed", "payload.user.id", "int", "str", "s2", 2000),
        DriftEvent("changed", "x", "int", "None|int", "s3", 3000),
        DriftEvent("disappeared", "payload", "dict{user:dict{id:str}}", None, "s3", 3000),
        DriftEvent("appeared", "payload.note", None, "str", "s4", 4000),
        DriftEvent("appeared", "*args", None, "tuple[int]", "s4", 4000),  # not *args[0] too
    ]


def test_malformed_variants_raise_value_error() -> None:
    with pytest.raises(ValueError, match="position 10"):
        drift(_variants("dict{a:int}", "dict{a:int"))
    with pytest.raises(ValueError, match="input variant"):
        input_drift(["x"], _variants('["int"]', "int"))
