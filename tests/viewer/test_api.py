"""The JSON API under /api/ and /health, over the demo recording."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from flowagent.reports.export import FORMATS


def get(client: FlaskClient, path: str, status: int = 200) -> dict:
    r = client.get(path)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"  # live data: never cached
    return r.get_json()


def test_health(client: FlaskClient) -> None:
    body = get(client, "/health")
    assert body["status"] == "ok" and body["store"] == "ok" and body["runs"] == 1


def test_index_lists_endpoints(client: FlaskClient) -> None:
    assert "/api/runs" in get(client, "/api/")["endpoints"]


def test_runs(client: FlaskClient, demo: dict) -> None:
    runs = get(client, "/api/runs")["runs"]
    assert [r["run_id"] for r in runs] == [demo["run_id"]]
    run = runs[0]
    assert run["status"] == "finished" and run["live"] is False
    assert run["sessions"] == 22 and run["calls"] > 600 and run["dropped_events"] == 0
    one = get(client, f"/api/runs/{demo['run_id']}")
    assert one["run"]["run_id"] == demo["run_id"]
    assert len(one["processes"]) == 1


def test_sessions_listing(client: FlaskClient, demo: dict) -> None:
    run = demo["run_id"]
    page = get(client, f"/api/runs/{run}/sessions?per_page=10&order=duration")
    assert page["total"] == 22 and page["matched"] == 22 and page["has_more"] is True
    assert len(page["items"]) == 10 and page["pages"] == 3
    durations = [s["duration_ns"] for s in page["items"]]
    assert durations == sorted(durations, reverse=True)
    assert page["items"][0]["url"] == f"/sessions/{page['items'][0]['session_id']}"
    last = get(client, f"/api/runs/{run}/sessions?per_page=10&order=duration&page=3")
    assert len(last["items"]) == 2 and last["has_more"] is False
    errors = get(client, f"/api/runs/{run}/sessions?result=partial")
    assert errors["matched"] == len(errors["items"]) > 0
    assert all(s["result"] == "partial" for s in errors["items"])
    search = get(client, f"/api/runs/{run}/sessions?q=Cart.add")
    assert search["matched"] is None and search["items"]  # a search is paged, not counted


def test_roots(client: FlaskClient, demo: dict) -> None:
    roots = get(client, f"/api/runs/{demo['run_id']}/roots")["roots"]
    names = {r["name"]: r["sessions"] for r in roots}
    assert names["<request>:POST /carts/<owner>/items"] == 8
    assert names["__main__:main"] == 1


def test_session_graph(client: FlaskClient, demo: dict) -> None:
    body = get(client, f"/api/sessions/{demo['big']}")
    assert body["session"]["session_id"] == demo["big"]
    graph = body["graph"]
    assert len(graph["nodes"]) == 469 and len(graph["edges"]) == 468
    assert {"function_name", "input_shape", "output_shape", "result_type", "exception_type",
            "timestamp_start", "timestamp_end", "thread_name"} <= set(graph["nodes"][0])


def test_session_tree_and_timeline(client: FlaskClient, demo: dict) -> None:
    rows = get(client, f"/api/sessions/{demo['big']}/tree")["rows"]
    assert len(rows) == 469 and rows[0]["depth"] == 0 and rows[0]["parent"] is None
    assert all(r["parent"] is None or rows[r["parent"]]["depth"] == r["depth"] - 1 for r in rows)
    tl = get(client, f"/api/sessions/{demo['big']}/timeline")
    assert tl["duration_ns"] > 0 and tl["tracks"]
    assert sum(len(t["spans"]) for t in tl["tracks"]) == 469
    assert tl["tracks"][0]["label"].startswith("MainThread")
    for track in tl["tracks"]:
        for row, start, end, level, fn, result in track["spans"]:
            assert rows[row]["function_name"] == tl["functions"][fn]
            assert 0 <= start <= end <= tl["duration_ns"]
            assert 0 <= level < track["height"]
            assert tl["functions"][fn] and tl["results"][result]


def test_merged_graph_contract(client: FlaskClient, demo: dict) -> None:
    g = get(client, f"/api/runs/{demo['run_id']}/graph")
    assert g["graph_type"] == "merged" and g["runs"] == [demo["run_id"]]
    assert len(g["nodes"]) == 68
    assert {"from", "to", "branch", "frequency"} <= set(g["edges"][0])
    assert g["stats"]["frequent_paths"]


@pytest.mark.parametrize("level, nodes", [("function", 68), ("class", None), ("module", 11),
                                          ("package", 4)])
def test_graph_view_levels(client: FlaskClient, demo: dict, level: str, nodes: int | None) -> None:
    v = get(client, f"/api/runs/{demo['run_id']}/graph/view?level={level}")
    assert v["level"] == level and v["run"]["live"] is False
    if nodes is not None:
        assert len(v["nodes"]) == nodes
    ids = {n["id"] for n in v["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in v["edges"])
    box_ids = {b["id"] for b in v["boxes"]}
    assert all(n["parent"] is None or n["parent"] in box_ids for n in v["nodes"])
    assert sum(len(n["members"]) for n in v["nodes"]) == 68


def test_graph_view_filters(client: FlaskClient, demo: dict) -> None:
    base = f"/api/runs/{demo['run_id']}/graph/view?level=function"
    errors = get(client, base + "&errors=1")
    assert errors["filters"]["errors_only"] is True
    assert errors["edges"] and all(e["errors"] or e["partials"] for e in errors["edges"])
    assert len(errors["nodes"]) < 68
    module = get(client, base + "&module=shop.cart")
    assert module["nodes"] and all(n["module"] == "shop.cart" for n in module["nodes"])
    package = get(client, base + "&module=shop")
    assert {n["module"] for n in package["nodes"]} >= {"shop.cart", "shop.web"}
    frequent = get(client, base + "&min_freq=10")
    assert all(e["frequency"] >= 10 for e in frequent["edges"])
    touched = {x for e in frequent["edges"] for x in (e["source"], e["target"])}
    assert all(n["calls"] >= 10 or n["id"] in touched for n in frequent["nodes"])
    bad = get(client, base + "&min_freq=abc&level=bogus")
    assert bad["level"] == "function" and bad["filters"]["min_frequency"] == 0


def test_function_details(client: FlaskClient, demo: dict) -> None:
    f = get(client, f"/api/runs/{demo['run_id']}/function?name=shop.catalog:Catalog.get")
    assert f["occurrences"] == 37 and f["errors"] == 3
    callers = {c["function_name"] for c in f["callers"]}
    assert "shop.catalog:Catalog.find" in callers
    assert [c["function_name"] for c in f["callees"]] == ["shop.catalog:Catalog.normalize_sku"]
    assert f["input_shapes"] and f["output_shapes"]
    assert f["min_ns"] <= f["avg_ns"] <= f["max_ns"]
    assert f["sessions"] and f["sessions"][0]["url"].startswith("/sessions/")
    get(client, f"/api/runs/{demo['run_id']}/function?name=nope", status=404)
    get(client, f"/api/runs/{demo['run_id']}/function", status=404)


def test_stats(client: FlaskClient, demo: dict) -> None:
    """The stats API is ``flowagent stats --json`` (``flowagent.reports.stats.report``) plus the
    viewer's sort order, function count and loss flag."""
    s = get(client, f"/api/runs/{demo['run_id']}/stats?sort=self")
    assert list(s)[:11] == ["run", "loss", "session_durations", "functions", "error_hotspots",
                            "error_clusters", "variants", "frequent_paths", "shapes", "drift",
                            "processes"]
    assert s["sort"] == "self" and s["function_count"] == 68 == len(s["functions"])
    selfs = [f["self_ns"] for f in s["functions"]]
    assert selfs == sorted(selfs, reverse=True)
    hot = {h["function"]: h for h in s["error_hotspots"]}
    assert hot["shop.inventory:stock_level"]["errors"] == 3
    assert {c["exception"] for c in s["error_clusters"]
            if c["function"] == "shop.inventory:stock_level"} == {"KeyError"}
    assert s["has_loss"] is False and s["loss"]["dropped_events"] == 0
    assert s["frequent_paths"][0]["count"] >= s["frequent_paths"][-1]["count"]
    assert sum(v["count"] for v in s["variants"]) == s["session_durations"]["count"] == 22
    assert s["run"]["live"] is False and s["processes"][0]["events"] > 0
    assert get(client, f"/api/runs/{demo['run_id']}/stats")["sort"] == "total"
    assert get(client, f"/api/runs/{demo['run_id']}/stats?sort=avg")["sort"] == "mean"


def test_stats_is_the_cli_report(client: FlaskClient, demo: dict, demo_dir) -> None:
    from flowagent.reports.stats import report
    from flowagent.store.sqlite import SQLiteStore, db_path

    store = SQLiteStore(db_path(str(demo_dir)), readonly=True)
    try:
        expected = report(store, demo["run_id"])
    finally:
        store.close()
    s = get(client, f"/api/runs/{demo['run_id']}/stats")
    for key in ("loss", "session_durations", "functions", "error_clusters", "variants",
                "frequent_paths", "shapes", "drift", "processes"):
        assert s[key] == json.loads(json.dumps(expected[key])), key


def test_function_has_percentiles_merged_shapes_and_drift(client: FlaskClient,
                                                         demo: dict) -> None:
    f = get(client, f"/api/runs/{demo['run_id']}/function?name=shop.inventory:stock_level")
    assert f["p50_ns"] <= f["p95_ns"] <= f["p99_ns"]
    assert f["merged_shapes"] == {"inputs": {"sku": "str"}, "output": "int"}
    assert f["drift"] == []
    route = get(client, f"/api/runs/{demo['run_id']}/function?name=<request>:GET /products/<sku>")
    assert route["drift"] and route["drift"][0]["url"].startswith("/sessions/")


def test_formats(client: FlaskClient) -> None:
    formats = {f["name"]: f for f in get(client, "/api/formats")["formats"]}
    assert set(formats) == set(FORMATS)
    assert "session" in formats["dot"]["inputs"] and "merged" in formats["dot"]["inputs"]


@pytest.mark.parametrize("path", [
    "/api/runs/nope", "/api/runs/nope/sessions", "/api/runs/nope/roots", "/api/runs/nope/graph",
    "/api/runs/nope/graph/view", "/api/runs/nope/function?name=x", "/api/runs/nope/stats",
    "/api/sessions/nope", "/api/sessions/nope/tree", "/api/sessions/nope/timeline",
    "/api/sessions/..%2F..%2Fetc%2Fpasswd", "/api/sessions/../../etc/passwd",
    "/api/no/such/endpoint", "/api/runs/%00",
])
def test_unknown_ids_are_json_404(client: FlaskClient, path: str) -> None:
    body = get(client, path, status=404)
    assert body["status"] == 404 and body["error"]
    assert "root:" not in str(body)
