"""``/metrics``: the store's aggregates in the Prometheus text format (``prometheus_client``).

Built on each scrape from the merged-graph aggregates the sidecar keeps up to date (live runs
included), by a custom collector over a fresh registry: nothing is counted in the viewer
process itself, so every viewer (and a restarted one) serves the same figures, and a scrape
reads a bounded amount of data (per function and per flow variant, never per call).

Series carry ``run`` and ``service`` labels (the service is the run's ``service`` when the
store has one, else its program's name), so dashboards sum by service across runs. Only the
:data:`RUNS` most recent runs are exported (``METRICS_RUNS`` in the app config): an old run's
counters stop moving and would otherwise grow every scrape forever.

Duration histograms are re-bucketed from the store's log-linear histograms
(:mod:`flowagent.model.histogram`) onto bounds that are powers of two nanoseconds
(:data:`BOUNDS_NS`, 1.024 µs to 17.2 s): every stored bucket lies wholly below or above each
of them, so the exported cumulative counts are exact, not interpolated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from flowagent.reports.export.otlp import run_service_name
from flowagent.model import histogram as H
from flowagent.store.api import Store

from .data import get_store, is_live

bp = Blueprint("metrics", __name__)

RUNS = 20
BOUNDS_NS = tuple(1 << k for k in range(10, 36, 2))  # 2^10 ns ... 2^34 ns
_RUN_LABELS = ["run", "service"]
_FN_LABELS = ["run", "service", "function"]


def duration_buckets(hist: dict[int, int]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs of a stored histogram on :data:`BOUNDS_NS`."""
    out = []
    exact = H.is_exact(hist)  # small distributions keep each duration: key ~ns
    for bound in BOUNDS_NS:
        if exact:
            count = sum(n for k, n in hist.items() if ~k < bound)
        else:
            count = sum(n for b, n in hist.items() if H.upper(b) <= bound)
        out.append((repr(bound / 1e9), float(count)))
    out.append(("+Inf", float(sum(hist.values()))))
    return out


class StoreCollector(Collector):
    """Reads one store at collect time."""

    def __init__(self, store: Store, runs: int) -> None:
        self.store = store
        self.runs = runs

    def collect(self) -> Iterator[Any]:
        store = self.store
        runs = store.runs(limit=self.runs)
        calls = CounterMetricFamily("flowagent_calls", "Recorded calls per function.",
                                    labels=_FN_LABELS)
        errors = CounterMetricFamily("flowagent_call_errors",
                                     "Calls that raised (result error) per function.",
                                     labels=_FN_LABELS)
        partials = CounterMetricFamily(
            "flowagent_call_partials",
            "Calls that returned although something under them raised (result partial).",
            labels=_FN_LABELS)
        durations = HistogramMetricFamily(
            "flowagent_call_duration_seconds", "Call durations per function (wall clock).",
            labels=_FN_LABELS)
        sessions = CounterMetricFamily("flowagent_sessions", "Sessions per result.",
                                       labels=[*_RUN_LABELS, "result"])
        variants = CounterMetricFamily(
            "flowagent_flow_variant_sessions",
            "Finished sessions per flow variant (sessions grouped by call-tree shape).",
            labels=[*_RUN_LABELS, "variant", "root"])
        variant_errors = CounterMetricFamily(
            "flowagent_flow_variant_errors",
            "Finished sessions of each flow variant whose root ended in error.",
            labels=[*_RUN_LABELS, "variant", "root"])
        dropped = CounterMetricFamily(
            "flowagent_dropped_events", "Call records lost because a ring was full.",
            labels=_RUN_LABELS)
        undelivered = CounterMetricFamily(
            "flowagent_otlp_undelivered_sessions",
            "Sessions the OpenTelemetry sender could not deliver.", labels=_RUN_LABELS)
        live = GaugeMetricFamily("flowagent_run_live", "1 while the run is being recorded.",
                                 labels=_RUN_LABELS)
        for run in runs:
            run_id = run["run_id"]
            service = run_service_name(run)
            labels = [run_id, service]
            names = {fid: f["name"] for fid, f in self.store.functions(run_id).items()}
            for r in store.node_stats(run_id):
                fn = [*labels, names.get(r.fid, "?")]
                calls.add_metric(fn, r.calls)
                errors.add_metric(fn, r.errors)
                partials.add_metric(fn, r.partials)
                durations.add_metric(fn, duration_buckets(dict(r.hist)),
                                     sum_value=r.total_ns / 1e9)
            for result, n in store.session_results(run_id).items():
                sessions.add_metric([*labels, result], n)
            for v in store.variant_stats(run_id):
                key = [*labels, v.variant, names.get(v.root_fid, "?")]
                variants.add_metric(key, v.count)
                variant_errors.add_metric(key, v.errors)
            is_running = is_live(run)
            lost = run.get("dropped_events") or 0
            if is_running:  # the runs row gets its totals at the end; processes are live
                lost = sum(p["dropped_events"] or 0 for p in store.processes(run_id))
            dropped.add_metric(labels, lost)
            undelivered.add_metric(labels, run.get("otlp_undelivered") or 0)
            live.add_metric(labels, 1 if is_running else 0)
        yield from (calls, errors, partials, durations, sessions, variants, variant_errors,
                    dropped, undelivered, live)


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(get_store(), int(current_app.config.get("METRICS_RUNS",
                                                                             RUNS))))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


__all__ = ["BOUNDS_NS", "StoreCollector", "bp", "duration_buckets"]
