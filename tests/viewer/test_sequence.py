"""The sequence diagram of a session: the model (lifelines, lanes, paired messages), the
Mermaid ``sequenceDiagram`` export checked with the real Mermaid parser, and the page on the
program with a planted flow."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from flowagent.reports.export._sequence import owner, sequence
from flowagent.reports.export.mermaid import session_sequence_mermaid

_UNIT = Path(__file__).resolve().parents[1] / "unit" / "test_export.py"
_spec = importlib.util.spec_from_file_location("export_cases", _UNIT)
assert _spec and _spec.loader
cases: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def two_threads() -> dict:
    """A request whose handler calls a method, a nested function, and work in another thread
    and another process; the method raises and the handler handles it."""
    n = cases.node
    return cases.session([
        n(1, None, "<request>:GET /items/<id>", 0, 1000, result_type="partial",
          output_shape="HTTP 200", input_shape={}),
        n(2, 1, "shop.api:get_item", 10, 900, result_type="partial"),
        n(3, 2, "shop.db:Repo.load", 20, 100, result_type="error", exception_type="KeyError",
          output_shape=None),
        n(4, 2, "shop.api:get_item.<locals>.fallback", 110, 200),
        n(5, 2, "shop.jobs:Audit.write", 300, 400, thread=777, thread_name="audit"),
        n(6, 2, "shop.jobs:index", 500, 600, pid=5151, thread=1, thread_name="MainThread"),
    ], name="<request>:GET /items/<id>")


def test_model_lifelines_lanes_and_paired_messages() -> None:
    assert owner("shop.db:Repo.load") == "shop.db:Repo"
    assert owner("shop.api:get_item.<locals>.fallback") == "shop.api"
    assert owner("shop.api:get_item") == "shop.api"
    m = sequence(two_threads())
    labels = [(x.label, x.lane) for x in m.lifelines]
    assert labels[0] == ("client", "l0")
    assert [lane.label for lane in m.lanes] == ["MainThread · pid 4242", "audit · pid 4242",
                                                "MainThread · pid 5151"]
    assert ("shop.jobs:Audit", "l1") in labels and ("shop.jobs", "l2") in labels
    ids = {x.id: x.label for x in m.lifelines}
    kinds = [(msg.kind, ids[msg.source], ids[msg.target]) for msg in m.messages]
    assert kinds[:4] == [("call", "client", "<request>"), ("call", "<request>", "shop.api"),
                         ("call", "shop.api", "shop.db:Repo"), ("return", "shop.db:Repo", "shop.api")]
    assert len(m.messages) == 12 and m.calls == 6 and m.left_out == 0
    load_return = m.messages[3]
    assert load_return.text == "raise KeyError" and load_return.result == "error"
    nested = m.messages[4]
    assert ids[nested.source] == ids[nested.target] == "shop.api"  # a self-call
    audit = next(x for x in m.messages if x.kind == "call" and "Audit" in x.text)
    assert audit.asynchronous
    assert m.messages[-1].text == "HTTP 200 (handled an error below)"


def test_model_limit_keeps_returns_balanced() -> None:
    n = cases.node
    nodes = [n(1, None, "m:root", 0, 10_000)] + [n(i, 1, f"m:C.f{i}", i * 10, i * 10 + 5)
                                                  for i in range(2, 50)]
    m = sequence(cases.session(nodes), limit=10)
    assert m.left_out == 39
    calls = [x.call for x in m.messages if x.kind == "call"]
    returns = [x.call for x in m.messages if x.kind == "return"]
    assert sorted(calls) == sorted(returns) and len(calls) == 10


def test_sequence_mermaid_parses_with_the_real_parser() -> None:
    texts = [session_sequence_mermaid(two_threads()),
             session_sequence_mermaid(cases.shop_session()),
             session_sequence_mermaid(cases.hostile_session())]
    status, results = cases.mermaid_parse(texts)
    assert status == 0, results
    plain, shop, hostile = results
    assert plain["type"] == "sequence"
    assert [b["name"] for b in plain["boxes"]] == ["MainThread · pid 4242", "audit · pid 4242",
                                                   "MainThread · pid 5151"]
    assert set(plain["actors"].values()) >= {"client", "‹request›", "shop.api", "shop.db꞉Repo"}
    texts_in_order = [m["text"] for m in plain["messages"]]
    assert texts_in_order[0] == "GET /items/‹id›()"
    assert "raise KeyError" in texts_in_order
    assert len(plain["messages"]) == 12
    # every hostile name comes through as text, never as syntax: one message per call/return
    assert len(hostile["messages"]) == 2 * len(cases.HOSTILE) + 2
    shown = "\n".join(m["text"] for m in hostile["messages"])
    assert "＃quot； ＃35； ＆lt； ＆amp； ％％{init" in shown and "‹script›alert" in shown
    assert len(shop["messages"]) == 6


def test_sequence_mermaid_checker_rejects_broken_text() -> None:
    status, results = cases.mermaid_parse(["sequenceDiagram\n  a->>b: x\n  b-->>-a: y\n"])
    assert status == 1 and not results[0]["ok"]  # deactivating what was never active


def _run(client: FlaskClient) -> str:
    return client.get("/api/runs").get_json()["runs"][0]["run_id"]


def test_sequence_page_and_export_of_a_recorded_session(flow_client: FlaskClient) -> None:
    run = _run(flow_client)
    items = flow_client.get(f"/api/runs/{run}/sessions?result=partial&per_page=10").get_json()
    sid = items["items"][0]["session_id"]
    model = flow_client.get(f"/api/sessions/{sid}/sequence").get_json()
    labels = [x["label"] for x in model["lifelines"]]
    assert labels == ["program", "__main__", "__main__:Store"]
    texts = [m["text"] for m in model["messages"]]
    assert texts[0].startswith("handle(") and "raise __main__.NotFound" in texts
    page = flow_client.get(f"/sessions/{sid}/sequence").get_data(as_text=True)
    assert 'id="seq-canvas"' in page and "participant" not in page
    export = flow_client.get(f"/export/sessions/{sid}/sequence.mmd")
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    status, [parsed] = cases.mermaid_parse([export.get_data(as_text=True)])
    assert status == 0 and parsed["messages"][0]["from"] == "p0"
    assert flow_client.get("/export/sessions/nope/sequence.mmd").status_code == 404
    assert json.loads(flow_client.get("/api/sessions/nope/sequence").get_data())["error"]
    # session 7 started an "audit" thread: it joins that session as a second lane
    audited = flow_client.get(f"/api/runs/{run}/sessions?q=Audit.record").get_json()["items"]
    assert len(audited) == 1
    model = flow_client.get(f"/api/sessions/{audited[0]['session_id']}/sequence").get_json()
    lanes = [x["label"].split(" · ")[0] for x in model["lanes"]]
    assert lanes == ["MainThread", "audit"]
    audit_lane = model["lanes"][1]["id"]
    assert [x["label"] for x in model["lifelines"] if x["lane"] == audit_lane] == ["__main__:Audit"]


def test_hostile_names_are_escaped_in_flows_and_sequence_pages(hostile_client: FlaskClient
                                                               ) -> None:
    from urllib.parse import quote

    from viewer_data import HOSTILE_FUNCTION, HOSTILE_RUN, HOSTILE_SESSION, XSS, XSS_CLOSE

    for path in (f"/runs/{HOSTILE_RUN}/flows?entry={quote(HOSTILE_FUNCTION)}",
                 f"/sessions/{HOSTILE_SESSION}/sequence"):
        r = hostile_client.get(path)
        assert r.status_code == 200, path
        body = r.get_data(as_text=True)
        assert XSS not in body and XSS_CLOSE not in body, path
    text = hostile_client.get(f"/export/sessions/{HOSTILE_SESSION}/sequence.mmd").get_data(
        as_text=True)
    status, [parsed] = cases.mermaid_parse([text])
    assert status == 0 and "‹script›alert(1)‹/script›" in "\n".join(parsed["actors"].values())
