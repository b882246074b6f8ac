"""The flow view of one entry point, on a program with a planted flow (``FLOW_APP``)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from viewer_data import FLOW_SESSIONS


def _run(client: FlaskClient) -> str:
    return client.get("/api/runs").get_json()["runs"][0]["run_id"]


def _steps(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["function"]: c for c in node["children"]}


def test_flow_tree_shows_the_planted_structure(flow_client: FlaskClient) -> None:
    run = _run(flow_client)
    listing = flow_client.get(f"/api/runs/{run}/flows").get_json()
    assert listing["entries"][0] == {"entry": "__main__:handle", "sessions": FLOW_SESSIONS,
                                     "failed": 0, "variants": 4}
    flow = flow_client.get(f"/api/runs/{run}/flows?entry=__main__:handle").get_json()["flow"]
    assert flow["sessions"] == FLOW_SESSIONS and flow["sampled"] == FLOW_SESSIONS
    assert flow["duration"]["p50_ns"] and flow["duration"]["p99_ns"] >= flow["duration"]["p50_ns"]
    root = flow["tree"]
    assert root["function"] == "__main__:handle" and root["partials"] == 3
    steps = _steps(root)
    assert set(steps) == {"__main__:validate", "__main__:cached", "__main__:Store.load",
                          "__main__:View.render", "__main__:Audit.record"}
    assert steps["__main__:validate"]["share"] == 1.0
    assert steps["__main__:cached"]["sessions"] == 5 and steps["__main__:cached"]["share"] == 0.25
    load = steps["__main__:Store.load"]
    assert load["sessions"] == 15 and load["errors"] == 3
    assert load["exceptions"] == [["__main__.NotFound", 3]]
    assert steps["__main__:View.render"]["sessions"] == 12
    # the audit thread started by handle(7) belongs to that session: a step of its flow
    assert steps["__main__:Audit.record"]["sessions"] == 1
    assert all(s["p50_ns"] is not None for s in steps.values())
    # variants: audited then loaded and rendered (i=7), load failed, cached, loaded and rendered
    assert sorted(v["count"] for v in flow["variants"]) == [1, 3, 5, 11]


def test_flow_page_and_unknown_entry(flow_client: FlaskClient) -> None:
    run = _run(flow_client)
    page = flow_client.get(f"/runs/{run}/flows").get_data(as_text=True)
    assert "__main__:handle" in page and 'id="flow-canvas"' in page
    assert flow_client.get(f"/api/runs/{run}/flows?entry=nope").status_code == 404
    missing = flow_client.get(f"/runs/{run}/flows?entry=%3Cscript%3E").get_data(as_text=True)
    assert "&lt;script&gt;" in missing and "<script>" not in missing.split("page-data")[0]
