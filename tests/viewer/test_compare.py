"""Two recorded runs compared on the map (``?compare=RUN_A`` on run B's architecture)."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from flowagent_viewer import compareview, create_app


def _runs(client: FlaskClient) -> tuple[str, str]:
    runs = client.get("/api/runs").get_json()["runs"]  # newest first
    return runs[1]["run_id"], runs[0]["run_id"]


def test_changes_are_tagged_on_the_map(compare_dir: Path) -> None:
    client = create_app({"DATA_DIR": str(compare_dir)}).test_client()
    a, b = _runs(client)
    v = client.get(f"/api/runs/{b}/graph/view?level=function&compare={a}").get_json()
    tags = {n["id"]: n["compare"] for n in v["nodes"]}
    assert tags["__main__:fresh"] == ["new", "errors"]
    assert tags["__main__:legacy"] == ["gone"]
    assert tags["__main__:fetch"] == ["slower"]
    assert tags["__main__:handle"] == ["slower"]  # it waits for fetch()
    edges = {(e["source"], e["target"]): e for e in v["edges"]}
    assert edges[("__main__:handle", "__main__:fresh")]["compare"] == ["new"]
    gone = edges[("__main__:handle", "__main__:legacy")]
    assert gone["compare"] == ["gone"] and gone["frequency"] == 0
    assert edges[("__main__:handle", "__main__:fetch")]["compare"] == []
    c = v["compare"]
    assert (c["run_a"], c["run_b"]) == (a, b)
    assert c["new_functions"] == ["__main__:fresh"] and c["gone_functions"] == ["__main__:legacy"]
    assert {t["function"] for t in c["slower"]} == {"__main__:fetch", "__main__:handle"}
    assert [e["exception"] for e in c["new_errors"]] == ["ValueError"]
    # collapsed to the module, the same changes still show
    m = client.get(f"/api/runs/{b}/graph/view?level=module&compare={a}").get_json()
    assert set(m["nodes"][0]["compare"]) == {"slower", "errors"}
    # without compare: run B alone; an unknown run is a 404
    plain = client.get(f"/api/runs/{b}/graph/view?level=function").get_json()
    assert "compare" not in plain and "__main__:legacy" not in {n["id"] for n in plain["nodes"]}
    assert client.get(f"/api/runs/{b}/graph/view?compare=nope").status_code == 404
    page = client.get(f"/runs/{b}/graph?compare={a}").get_data(as_text=True)
    assert f'<option value="{a}" selected>' in page


def test_result_shifts_are_read_when_present_and_ignored_when_malformed() -> None:
    contract = {"nodes": [{"id": "m:f", "module": "m", "qualname": "f", "kind": "function",
                           **compareview.ZERO, "occurrences": 3}], "edges": []}
    from flowagent_viewer.graphview import view_graph
    d = {"functions": {"new": [], "removed": []}, "edges": {"new": [], "removed": []},
         "result_shifts": [{"function": "m:f", "a": {"calls": 3, "success": 3},
                            "b": {"calls": 3, "error": 2, "success": 1}}, "junk", {"x": 1}]}
    v = compareview.annotate(view_graph(contract), d, contract)
    assert v["nodes"][0]["compare"] == ["shift"]
    assert [s["function"] for s in v["compare"]["result_shifts"]] == ["m:f"]
    bare = compareview.annotate(view_graph(contract), {}, contract)
    assert bare["nodes"][0]["compare"] == [] and bare["compare"]["result_shifts"] == []
