"""Pure parts of the viewer: session tree and timeline, graph collapse and filters, paging."""

from __future__ import annotations

import json
from typing import Any

from flowagent.store import queries
from flowagent.store.api import db_path
from flowagent.store.sqlite import SQLiteStore
from flowagent_viewer import fmt, graphview, sessionview
from flowagent_viewer.sessionlist import parse_filters


def call(cid: int, parent: int | None, name: str, t0: int, t1: int, result: str = "success",
         thread: int = 1) -> dict[str, Any]:
    return {"id": cid, "parent_id": parent, "function_name": name, "input_shape": {},
            "output_shape": "None", "result_type": result, "exception_type": None,
            "timestamp_start": t0, "timestamp_end": t1, "thread": thread, "thread_name": "Main",
            "pid": 1}


def test_deep_recursion_renders_without_recursing() -> None:
    depth = 5000  # deeper than Python's and the HTML parser's nesting limits
    nodes = [call(i + 1, i or None, "m:f", i, 2 * depth - i) for i in range(depth)]
    rows = sessionview.tree_rows({"nodes": nodes})
    assert [r.depth for r in rows] == list(range(depth))
    assert sum(r.visible for r in rows) <= sessionview.OPEN_BUDGET + 1
    assert rows[-1].css.startswith("row r-success d40 hidden")
    tl = sessionview.timeline({"nodes": nodes})
    assert tl["tracks"][0]["height"] == depth


def test_big_tree_opens_only_the_first_levels_and_error_paths() -> None:
    nodes = [call(1, None, "m:root", 0, 10**6)]
    for i in range(50):
        nodes.append(call(2 + i * 21, 1, "m:child", i * 100, i * 100 + 90))
        for j in range(20):
            result = "error" if (i, j) == (49, 19) else "success"
            nodes.append(call(3 + i * 21 + j, 2 + i * 21, "m:leaf", i * 100 + j, i * 100 + j + 1,
                              result))
    rows = sessionview.tree_rows({"nodes": nodes}, budget=100)
    visible = [r for r in rows if r.visible]
    assert len(visible) == 1 + 50 + 20  # root, its children, the leaves under the error
    assert any(r.result == "error" for r in visible)
    small = sessionview.tree_rows({"nodes": nodes[:5]})
    assert all(r.visible for r in small)


def test_orphans_and_cycles_are_still_shown() -> None:
    nodes = [call(1, 99, "m:orphan", 0, 10), call(2, 3, "m:a", 0, 10), call(3, 2, "m:b", 0, 10)]
    rows = sessionview.tree_rows({"nodes": nodes})
    assert sorted(r.function_name for r in rows) == ["m:a", "m:b", "m:orphan"]


def test_timeline_overlapping_tasks_get_lanes() -> None:
    nodes = [call(1, None, "m:gather", 0, 100), call(2, 1, "m:task", 10, 60),
             call(3, 1, "m:task", 20, 80), call(4, None, "m:other", 0, 50, thread=2)]
    tl = sessionview.timeline({"nodes": nodes})
    labels = [t["label"] for t in tl["tracks"]]
    assert len(labels) == 3 and any("lane 1" in label for label in labels)
    assert tl["duration_ns"] == 100


CONTRACT = {
    "nodes": [
        {"id": "<request>:GET /x", "module": "<request>", "qualname": "GET /x", "kind": "request",
         "occurrences": 5, "errors": 0, "partials": 2, "roots": 5, "total_ns": 500,
         "self_ns": 50, "min_ns": 90, "max_ns": 110},
        {"id": "app.api:Api.get", "module": "app.api", "qualname": "Api.get", "kind": "method",
         "occurrences": 5, "errors": 0, "partials": 2, "roots": 0, "total_ns": 450,
         "self_ns": 100, "min_ns": 80, "max_ns": 100},
        {"id": "app.api:Api.put", "module": "app.api", "qualname": "Api.put", "kind": "method",
         "occurrences": 1, "errors": 0, "partials": 0, "roots": 0, "total_ns": 10, "self_ns": 10,
         "min_ns": 10, "max_ns": 10},
        {"id": "app.db.store:load", "module": "app.db.store", "qualname": "load",
         "kind": "function", "occurrences": 9, "errors": 2, "partials": 0, "roots": 0,
         "total_ns": 350, "self_ns": 300, "min_ns": 30, "max_ns": 50},
        {"id": "app.db.store:load.<locals>.inner", "module": "app.db.store",
         "qualname": "load.<locals>.inner", "kind": "function", "occurrences": 9, "errors": 0,
         "partials": 0, "roots": 0, "total_ns": 50, "self_ns": 50, "min_ns": 5, "max_ns": 6},
    ],
    "edges": [
        {"from": "<request>:GET /x", "to": "app.api:Api.get", "branch": "success", "frequency": 3},
        {"from": "<request>:GET /x", "to": "app.api:Api.get", "branch": "partial", "frequency": 2},
        {"from": "app.api:Api.get", "to": "app.db.store:load", "branch": "success", "frequency": 7},
        {"from": "app.api:Api.get", "to": "app.db.store:load", "branch": "error", "frequency": 2},
        {"from": "app.api:Api.get", "to": "app.api:Api.put", "branch": "success", "frequency": 1},
        {"from": "app.db.store:load", "to": "app.db.store:load.<locals>.inner",
         "branch": "success", "frequency": 9},
    ],
    "stats": {"total_sessions": 5},
}


def test_collapse_levels() -> None:
    f = graphview.view_graph(CONTRACT, level="function")
    assert len(f["nodes"]) == 5
    assert {b["id"] for b in f["boxes"]} == {"m:<request>", "m:app.api", "m:app.db.store",
                                            "c:app.api:Api"}
    get = next(n for n in f["nodes"] if n["id"] == "app.api:Api.get")
    assert get["parent"] == "c:app.api:Api"
    c = graphview.view_graph(CONTRACT, level="class")
    ids = {n["id"] for n in c["nodes"]}
    assert ids == {"<request>:GET /x", "app.api:Api", "app.db.store:load"}
    load = next(n for n in c["nodes"] if n["id"] == "app.db.store:load")
    assert load["members"] == ["app.db.store:load", "app.db.store:load.<locals>.inner"]
    assert load["internal_calls"] == 9 and load["calls"] == 18 and load["total_ns"] is None
    api = next(n for n in c["nodes"] if n["id"] == "app.api:Api")
    assert api["internal_calls"] == 1  # get → put stays inside the class
    m = graphview.view_graph(CONTRACT, level="module")
    assert {n["id"] for n in m["nodes"]} == {"<request>", "app.api", "app.db.store"}
    # each package holds one module here: a frame around one node says nothing
    assert {n["parent"] for n in m["nodes"]} == {None}
    edge = next(e for e in m["edges"] if e["source"] == "app.api")
    assert edge["frequency"] == 9 and edge["errors"] == 2
    p = graphview.view_graph(CONTRACT, level="package")
    assert {n["id"] for n in p["nodes"]} == {"<request>", "app", "app.db"}
    assert p["boxes"] == []


def test_open_in_place_and_entries() -> None:
    m = graphview.view_graph(CONTRACT, level="module", opened=frozenset({"app.api"}))
    ids = {n["id"] for n in m["nodes"]}
    # the opened module shows its class, the others stay closed
    assert ids == {"<request>", "app.api:Api", "app.db.store"}
    api = next(n for n in m["nodes"] if n["id"] == "app.api:Api")
    assert api["level"] == "class" and api["parent"] == "m:app.api"
    assert [b for b in m["boxes"] if b["id"] == "m:app.api"][0]["opened"] is True
    assert m["opened"] == ["app.api"]
    # edges follow the members into the box
    assert {(e["source"], e["target"]) for e in m["edges"]} >= {("<request>", "app.api:Api"),
                                                                ("app.api:Api", "app.db.store")}
    deeper = graphview.view_graph(CONTRACT, level="module",
                                  opened=frozenset({"app.api", "app.api:Api"}))
    assert {"app.api:Api.get", "app.api:Api.put"} <= {n["id"] for n in deeper["nodes"]}
    entry = next(n for n in m["nodes"] if n["id"] == "<request>")
    assert entry["entry"] == "request"
    assert next(n for n in m["nodes"] if n["id"] == "app.db.store")["entry"] is None


def test_filters() -> None:
    errors = graphview.view_graph(CONTRACT, errors_only=True)
    assert {n["id"] for n in errors["nodes"]} == {"<request>:GET /x", "app.api:Api.get",
                                                   "app.db.store:load"}
    module = graphview.view_graph(CONTRACT, module="app.db")
    assert {n["id"] for n in module["nodes"]} == {"app.db.store:load",
                                                   "app.db.store:load.<locals>.inner"}
    assert graphview.view_graph(CONTRACT, module="app.d")["nodes"] == []  # dotted prefix only
    frequent = graphview.view_graph(CONTRACT, min_frequency=6)
    assert {(e["source"], e["target"]) for e in frequent["edges"]} == {
        ("app.api:Api.get", "app.db.store:load"),
        ("app.db.store:load", "app.db.store:load.<locals>.inner")}
    assert {n["id"] for n in frequent["nodes"]} == {
        "app.api:Api.get", "app.db.store:load", "app.db.store:load.<locals>.inner"}


def test_edge_width_is_logarithmic() -> None:
    widths = {(e["source"], e["target"]): e["width"]
              for e in graphview.view_graph(CONTRACT)["edges"]}
    assert widths[("app.api:Api.get", "app.db.store:load")] == 8.0
    assert 1 < widths[("app.api:Api.get", "app.api:Api.put")] < 4


def test_auto_level_and_modules() -> None:
    assert graphview.auto_level(CONTRACT) == "function"
    many = {"nodes": [dict(CONTRACT["nodes"][1], id=f"m{i % 40}.x:C{i}.f", module=f"m{i % 40}.x",
                           qualname=f"C{i}.f") for i in range(400)], "edges": []}
    assert graphview.auto_level(many) == "module"
    assert graphview.modules(CONTRACT) == ["<request>", "app", "app.api", "app.db",
                                           "app.db.store"]


def test_function_details() -> None:
    d = graphview.function_details(CONTRACT, "app.db.store:load")
    assert d is not None
    assert d["callers"] == [{"function_name": "app.api:Api.get", "frequency": 9,
                             "branches": {"success": 7, "error": 2}}]
    assert d["callees"][0]["function_name"] == "app.db.store:load.<locals>.inner"
    assert d["avg_ns"] == 38
    assert graphview.function_details(CONTRACT, "nope") is None


def test_parse_filters_defaults_and_bounds() -> None:
    f = parse_filters({})
    assert f == {"result": "", "root": "", "q": "", "min_ms": 0.0, "order": "-started",
                 "per_page": 50, "page": 1}
    f = parse_filters({"result": "bogus", "order": "x", "per_page": "0", "page": "-1",
                       "min_ms": "inf", "root": "r" * 1000})
    assert f["result"] == "" and f["order"] == "-started" and f["per_page"] == 1
    assert f["page"] == 1 and f["min_ms"] == 0.0 and len(f["root"]) == 200


def test_formatting() -> None:
    assert fmt.duration(999) == "999 ns" and fmt.duration(1500) == "1.5 µs"
    assert fmt.duration(2_500_000) == "2.50 ms" and fmt.duration(3 * 10**9) == "3.00 s"
    assert fmt.number(100000) == "100\u202f000"
    assert fmt.input_shape({"a": "int"}) == "(a: int)"
    assert fmt.argv('["app.py", "--x"]') == "app.py --x" and fmt.argv("not json") == "not json"
    assert fmt.timestamp(1_767_225_600_123_000_000) == "2026-01-01 00:00:00.123 UTC"


def test_queries(demo_dir: Any) -> None:
    store = SQLiteStore(db_path(str(demo_dir)), readonly=True)
    run = store.latest_run()
    assert run is not None
    assert queries.count_sessions(store, run) == (22, False)
    assert queries.count_sessions(store, run, cap=5) == (5, True)
    assert queries.count_sessions(store, run, root="POST /checkout")[0] == 5
    assert queries.live_totals(store, run)["sessions"] == 22
    exc = queries.exception_types(store, run)
    assert {e["exception_type"] for e in exc} >= {"KeyError", "ValueError"}
    found = queries.function_sessions(store, run, "shop.pricing:percent_off", limit=3)
    assert len(found) == 3
    started = [s["started_ns"] for s in found]
    assert started == sorted(started, reverse=True)
    assert queries.function_sessions(store, run, "nope") == []
    roots = queries.session_roots(store, run)
    assert sum(r["sessions"] for r in roots) == 22
    store.close()
    json.dumps(exc)  # plain data


def test_box_ids_never_clash_with_functions() -> None:
    clash = {"nodes": [
        dict(CONTRACT["nodes"][3], id="m:app.db.store", module="m", qualname="app.db.store"),
        *CONTRACT["nodes"][3:]], "edges": CONTRACT["edges"][-1:], "stats": {}}
    v = graphview.view_graph(clash, level="function")
    ids = [n["id"] for n in v["nodes"]] + [b["id"] for b in v["boxes"]]
    assert len(ids) == len(set(ids))
    box_ids = {b["id"] for b in v["boxes"]}
    assert all(n["parent"] in box_ids for n in v["nodes"] if n["parent"])
