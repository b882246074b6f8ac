"""``/metrics`` parsed with prometheus_client's own text parser, every value checked against
the store (the planted recording, made by the real ``flowagent run``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowagent.store.api import db_path

from flowagent.store.sqlite import SQLiteStore
from flowagent_viewer import create_app
from flowagent_viewer.metrics import BOUNDS_NS


def _scrape(data_dir: Path, **config: Any) -> dict[str, Any]:
    client = create_app({"DATA_DIR": str(data_dir), **config}).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}


def _samples(family: Any, suffix: str = "") -> dict[tuple, float]:
    out = {}
    for s in family.samples:
        if s.name == family.name + suffix:
            out[tuple(sorted(s.labels.items()))] = s.value
    return out


def _key(**labels: str) -> tuple:
    return tuple(sorted(labels.items()))


@pytest.fixture(scope="module")
def store(planted_dir: Path) -> Any:
    s = SQLiteStore(db_path(str(planted_dir)), readonly=True)
    yield s
    s.close()


def test_metrics_match_the_store(planted_dir: Path, store: Any) -> None:
    families = _scrape(planted_dir)
    (run,) = store.runs()
    run_id = run["run_id"]
    base = {"run": run_id, "service": "planted_app"}
    graphs = [store.session_graph(s["session_id"]) for s in store.sessions(run_id)]
    calls = [n for g in graphs for n in g["nodes"]]
    assert len(calls) == run["calls"] >= 15  # every tree is kept: the trees are the truth

    by_fn = Counter(n["function_name"] for n in calls)
    errors = Counter(n["function_name"] for n in calls if n["result_type"] == "error")
    partials = Counter(n["function_name"] for n in calls if n["result_type"] == "partial")
    assert errors and partials  # the planted program raises and handles
    expect = {_key(**base, function=f): float(n) for f, n in by_fn.items()}
    assert _samples(families["flowagent_calls"], "_total") == expect
    assert _samples(families["flowagent_call_errors"], "_total") == {
        _key(**base, function=f): float(errors[f]) for f in by_fn}
    assert _samples(families["flowagent_call_partials"], "_total") == {
        _key(**base, function=f): float(partials[f]) for f in by_fn}

    hist = families["flowagent_call_duration_seconds"]
    buckets = _samples(hist, "_bucket")
    counts = _samples(hist, "_count")
    sums = _samples(hist, "_sum")
    for function, n in by_fn.items():
        durations = [c["timestamp_end"] - c["timestamp_start"] for c in calls
                     if c["function_name"] == function]
        labels = {**base, "function": function}
        assert counts[_key(**labels)] == n
        assert sums[_key(**labels)] == pytest.approx(sum(durations) / 1e9, rel=1e-9, abs=1e-12)
        for bound in BOUNDS_NS:
            le = repr(bound / 1e9)
            assert buckets[_key(**labels, le=le)] == sum(d < bound for d in durations), le
        assert buckets[_key(**labels, le="+Inf")] == n

    sessions = store.sessions(run_id)
    by_result = Counter(s["result"] for s in sessions)
    assert _samples(families["flowagent_sessions"], "_total") == {
        _key(**base, result=r): float(n) for r, n in by_result.items()}
    variants = Counter((s["variant"], s["name"]) for s in sessions)
    variant_errors = Counter((s["variant"], s["name"]) for s in sessions
                             if s["result"] == "error")
    assert len(variants) >= 3
    assert _samples(families["flowagent_flow_variant_sessions"], "_total") == {
        _key(**base, variant=v, root=r): float(n) for (v, r), n in variants.items()}
    assert _samples(families["flowagent_flow_variant_errors"], "_total") == {
        _key(**base, variant=v, root=r): float(variant_errors[(v, r)]) for v, r in variants}
    assert _samples(families["flowagent_dropped_events"], "_total") == {
        _key(**base): float(run["dropped_events"])}
    assert _samples(families["flowagent_run_live"]) == {_key(**base): 0.0}


def test_metrics_keep_the_newest_runs(planted_dir: Path, store: Any) -> None:
    families = _scrape(planted_dir, METRICS_RUNS=0)
    assert _samples(families["flowagent_calls"], "_total") == {}


def test_shipped_dashboard_and_alerts_use_served_metrics(planted_dir: Path) -> None:
    """The Grafana dashboard and the alert rules under docs/ name only series /metrics has."""
    import json
    import re

    docs = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
    served = {s.name for f in _scrape(planted_dir).values() for s in f.samples}
    dashboard = json.loads((docs / "flowagent-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    rules = (docs / "flowagent-alerts.yml").read_text(encoding="utf-8")
    assert "FlowagentErrorBranchSpike" in rules
    used = set(re.findall(r"flowagent_[a-z_]+", " ".join(exprs) + rules))
    assert used and used <= served, used - served
