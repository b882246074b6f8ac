"""Downloads: every format of the registry for a session, a run and the merged graph."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from flowagent.reports.export import FORMATS


@pytest.mark.parametrize("name", [n for n, f in FORMATS.items() if f.session])
def test_session_export(client: FlaskClient, demo: dict, name: str) -> None:
    fmt = FORMATS[name]
    r = client.get(f"/export/sessions/{demo['big']}?format={name}")
    assert r.status_code == 200
    assert r.mimetype == fmt.media_type
    assert r.headers["Content-Disposition"] == \
        f'attachment; filename="session-{demo["big"]}{fmt.extension}"'
    body = r.get_data(as_text=True)
    assert "shop.catalog" in body
    if name == "json":
        assert len(json.loads(body)["nodes"]) == 469


@pytest.mark.parametrize("name", list(FORMATS))
def test_run_export(client: FlaskClient, demo: dict, name: str) -> None:
    fmt = FORMATS[name]
    r = client.get(f"/export/runs/{demo['run_id']}?format={name}")
    assert r.status_code == 200 and r.mimetype == fmt.media_type
    assert f'filename="run-{demo["run_id"]}{fmt.extension}"' in r.headers["Content-Disposition"]
    body = r.get_data(as_text=True)
    assert "shop.cart" in body
    if name == "json":
        assert json.loads(body)["graph_type"] == "merged"
    if name == "dot":
        assert body.lstrip().startswith(("digraph", "strict digraph", "//", "/*"))


@pytest.mark.parametrize("name", [n for n, f in FORMATS.items() if f.merged])
def test_merged_export(client: FlaskClient, demo: dict, name: str) -> None:
    all_runs = client.get(f"/export/merged?format={name}")
    one_run = client.get(f"/export/merged?format={name}&run={demo['run_id']}")
    assert all_runs.status_code == one_run.status_code == 200
    assert all_runs.get_data() == one_run.get_data()  # one run in the store


def test_export_links_on_pages(client: FlaskClient, demo: dict) -> None:
    index = client.get("/").get_data(as_text=True)
    assert f"/export/runs/{demo['run_id']}?format=chrome" in index
    graph = client.get(f"/runs/{demo['run_id']}/graph").get_data(as_text=True)
    for name in ("json", "dot", "mermaid"):
        assert f"/export/runs/{demo['run_id']}?format={name}" in graph
