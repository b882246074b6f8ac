"""The analysis on the stats page and in ``/api/runs/<id>/stats``, on a recording with planted
facts (``PLANTED_APP``): 6 + 2 + 1 sessions in three flow variants, a handled KeyError, an
unhandled OutOfStock, and a dict argument that gains a ``coupon`` field at the 4th call."""

from __future__ import annotations

import re
from html import unescape

import pytest
from flask.testing import FlaskClient

from flowagent_viewer.statsview import SPARK_H, SPARK_W, sparkline

from viewer_data import HOSTILE_FIELD, HOSTILE_RUN, XSS, XSS_CLOSE, XSS_IMG


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section[^>]*\bid="{sid}".*?</section>', html, re.S)
    assert m, f"no section {sid!r}"
    return m.group(0)


def rows(html: str) -> list[str]:
    """Each table row of ``html`` as its visible text, cells joined by ' | '."""
    out = []
    for tr in re.findall(r"<tr\b.*?</tr>", html, re.S):
        cells = re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", tr, re.S)
        out.append(" | ".join(" ".join(unescape(re.sub(r"<[^>]+>", " ", c)).split())
                              for c in cells))
    return out


@pytest.fixture
def planted(planted_client: FlaskClient) -> dict:
    run_id = planted_client.get("/api/runs").get_json()["runs"][0]["run_id"]
    items = planted_client.get(f"/api/runs/{run_id}/sessions?order=started&per_page=50"
                               ).get_json()["items"]
    items.sort(key=lambda s: s["started_ns"])
    handle = [s["session_id"] for s in items if s["name"] == "__main__:handle"]
    return {"run_id": run_id, "handle": handle,
            "page": planted_client.get(f"/runs/{run_id}/stats").get_data(as_text=True)}


def test_api_carries_the_planted_facts(planted_client: FlaskClient, planted: dict) -> None:
    s = planted_client.get(f"/api/runs/{planted['run_id']}/stats").get_json()
    assert [(v["root"], v["count"], v["failed"]) for v in s["variants"]] == [
        ("__main__:handle", 6, 0), ("__main__:safe_lookup", 2, 0), ("__main__:explode", 1, 1)]
    assert s["session_durations"]["count"] == 9
    clusters = {(c["exception"], c["function"], c["handled"]): c for c in s["error_clusters"]}
    assert clusters[("KeyError", "__main__:lookup", True)]["count"] == 2
    assert clusters[("KeyError", "__main__:lookup", True)]["path"] == [
        "__main__:safe_lookup", "__main__:lookup"]
    assert clusters[("__main__.OutOfStock", "__main__:explode", False)]["count"] == 1
    assert len(clusters) == 2
    handle_drift = [d for d in s["drift"] if d["function"] == "__main__:handle"]
    assert [(d["io"], d["kind"], d["path"], d["before"], d["after"], d["session"])
            for d in handle_drift] == [("in", "appeared", "order.coupon", None, "str",
                                        planted["handle"][3])]
    assert s["shapes"]["__main__:handle"]["merged"]["inputs"] == {
        "order": "dict{coupon?:str,qty:int,sku:str}"}
    assert s["loss"]["dropped_events"] == 0 and s["has_loss"] is False


def test_variants_section(planted: dict) -> None:
    table = rows(section(planted["page"], "variants"))
    assert table[0].startswith("Root | Sessions | Share | Failed | p50 | p95")
    body = [r.split(" | ") for r in table[1:]]
    assert [(r[0], r[1], r[2], r[3]) for r in body] == [
        ("__main__:handle", "6", "66.7 %", "0"), ("__main__:safe_lookup", "2", "22.2 %", "0"),
        ("__main__:explode", "1", "11.1 %", "1")]
    html = section(planted["page"], "variants")
    assert f'href="/sessions/{planted["handle"][0]}"' in html
    assert '<rect width="66.67" height="8"/>' in html  # the share bar, drawn server-side


def test_error_clusters_section(planted: dict) -> None:
    html = section(planted["page"], "clusters")
    unhandled = rows(re.search(r'id="unhandled-clusters".*?</table>', html, re.S).group(0))
    handled = rows(re.search(r'id="handled-clusters".*?</table>', html, re.S).group(0))
    assert len(unhandled) == 2 and len(handled) == 2  # header + one cluster each
    u = unhandled[1].split(" | ")
    assert u[:5] == ["__main__.OutOfStock", "__main__:explode", "__main__:explode",
                     "unhandled", "1"]
    h = handled[1].split(" | ")
    assert h[:5] == ["KeyError", "__main__:lookup", "__main__:safe_lookup __main__:lookup",
                     "handled", "2"]
    assert html.index('id="unhandled-clusters"') < html.index('id="handled-clusters"')
    assert '<ol class="crumbs path"><li class="fn">__main__:safe_lookup</li>' \
           '<li class="fn">__main__:lookup</li></ol>' in html
    assert 'class="badge handled"' in html and 'class="badge unhandled"' in html


def test_drift_section(planted: dict) -> None:
    html = section(planted["page"], "drift")
    table = [r.split(" | ") for r in rows(html)[1:]]
    handle = [r for r in table if r[0] == "__main__:handle"]
    assert handle == [["__main__:handle", "input", "appeared", "order.coupon", "– → str",
                       planted["handle"][3], handle[0][6]]]
    assert f'href="/sessions/{planted["handle"][3]}"' in html


def test_profiles_durations_processes_and_loss(planted: dict) -> None:
    page = planted["page"]
    prof = section(page, "profiles")
    names = [r.split(" | ")[0] for r in rows(prof)[1:]]
    assert set(names) == {"__main__:handle", "__main__:safe_lookup", "__main__:price",
                          "__main__:explode", "__main__:lookup"}
    assert rows(prof)[0].endswith("Mean | p50 | p95 | p99 | Max")
    link = re.search(r'href="([^"]*)">__main__:handle</a>', prof).group(1)
    assert link.startswith(f"/runs/{planted['run_id']}/graph?") and "level=function" in link
    assert re.search(r"focus=__main__(:|%3A)handle", link)
    durations = re.search(r'<dl class="facts" id="session-durations">.*?</dl>', page, re.S)
    assert "9 sessions" in durations.group(0)
    procs = rows(section(page, "processes"))
    assert len(procs) == 2 and "planted_app.py" in procs[1]
    loss = section(page, "data-loss")
    assert "Nothing lost" in loss and 'class="lost"' not in loss
    for label in ("Dropped events", "Corrupt frames", "Agent errors", "Sampled-out sessions",
                  "Incomplete sessions", "Hook errors"):
        assert label in loss


def test_function_api_for_the_graph_panel(planted_client: FlaskClient, planted: dict) -> None:
    f = planted_client.get(f"/api/runs/{planted['run_id']}/function?name=__main__:handle"
                           ).get_json()
    assert f["merged_shapes"] == {"inputs": {"order": "dict{coupon?:str,qty:int,sku:str}"},
                                  "output": "int"}
    assert [(d["path"], d["kind"], d["url"]) for d in f["drift"]] == [
        ("order.coupon", "appeared", f"/sessions/{planted['handle'][3]}")]
    assert f["p50_ns"] <= f["p95_ns"] <= f["p99_ns"]


def test_hostile_names_in_the_analysis_sections(hostile_client: FlaskClient) -> None:
    page = hostile_client.get(f"/runs/{HOSTILE_RUN}/stats").get_data(as_text=True)
    for sid in ("variants", "clusters", "drift", "processes", "profiles"):
        html = section(page, sid)
        for payload in (XSS, XSS_IMG, XSS_CLOSE):
            assert payload not in html, sid
        assert "&lt;script&gt;" in html or "&lt;img" in html or "&lt;/script&gt;" in html, sid
    drift = section(page, "drift")
    assert HOSTILE_FIELD not in drift and "&lt;b&gt;" in drift
    clusters = section(page, "clusters")
    assert "evil.&lt;img src=x onerror=alert(1)&gt;" in clusters
    assert 'id="handled-clusters"' in clusters
    # the recorded data lost events: the loss tiles say so
    loss = section(page, "data-loss")
    lost = re.findall(r'<div class="lost"[^>]*><dt>([^<]+)</dt><dd[^>]*>([^<]+)</dd>', loss)
    assert dict(lost) == {"Dropped events": "3", "Corrupt frames": "1", "Agent errors": "2"}
    assert "<polyline points=" in section(page, "processes")


def test_sparkline() -> None:
    assert sparkline([]) == "" and sparkline([{"ts_ns": 1, "rss_bytes": 5}]) == ""
    pts = sparkline([{"ts_ns": 0, "rss_bytes": 10}, {"ts_ns": 5, "rss_bytes": 20},
                     {"ts_ns": 10, "rss_bytes": 10}])
    assert pts == f"0.0,{SPARK_H - 1:.1f} {SPARK_W / 2:.1f},1.0 {SPARK_W:.1f},{SPARK_H - 1:.1f}"
    many = sparkline([{"ts_ns": i, "rss_bytes": i % 7} for i in range(10_000)])
    assert len(many.split()) <= SPARK_W + 1
