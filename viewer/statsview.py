"""Statistics of one run, as the stats page and ``/api/runs/<id>/stats`` show them.

Both start from :func:`flowagent.reports.stats.report` (the data behind ``flowagent stats --json``),
which reads the aggregates the sidecar keeps for every session, never the call trees: so the
page costs the same for 100 sessions as for 100 000. The API returns the report itself plus a
few keys the page's live refresh needs; the page shapes it into tables here, so the template
only formats.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SORTS = {
    "total": lambda f: f["total_ns"],
    "self": lambda f: f["self_ns"],
    "calls": lambda f: f["calls"],
    "errors": lambda f: f["errors"],
    "mean": lambda f: f["mean_ns"] or 0,
    "p50": lambda f: f["p50_ns"] or 0,
    "p95": lambda f: f["p95_ns"] or 0,
    "p99": lambda f: f["p99_ns"] or 0,
}
ALIASES = {"avg": "mean"}  # the name the stats page used before the percentiles came
DEFAULT_SORT = "total"

# (key in report["loss"], label, what to do about it): shown in this order, highlighted when
# non-zero. ``produced_events`` is context, not loss.
LOSS = (
    ("dropped_events", "Dropped events",
     "a process's ring was full: raise --ring-size or lower --flush-interval-ms"),
    ("dropped_batches", "Dropped batches", "batches the sidecar could not take in time"),
    ("corrupt_frames", "Corrupt frames", "frames that failed their checksum and were skipped"),
    ("duplicate_frames", "Duplicate frames", "frames seen twice (harmless, counted once)"),
    ("agent_errors", "Agent errors", "the agent's own errors inside the program, counted"),
    ("sampled_out", "Sampled-out sessions", "sessions skipped by --sample-rate"),
    ("profile_displacements", "Profile displacements",
     "times the program's own sys.setprofile or profiler displaced --backend profile in a "
     "thread; what ran meanwhile was not recorded"),
    ("incomplete_sessions", "Incomplete sessions", "sessions whose end was never seen"),
    ("hook_errors", "Hook errors", "hooks that raised; ingestion went on"),
)
LOST_KEYS = ("dropped_events", "dropped_batches", "corrupt_frames", "agent_errors",
             "hook_errors", "profile_displacements")
SPARK_W, SPARK_H = 120, 22


def sort_key(sort: str | None) -> str:
    sort = ALIASES.get(sort or "", sort or "")
    return sort if sort in SORTS else DEFAULT_SORT


def sorted_functions(functions: Iterable[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    key = SORTS[sort_key(sort)]
    return sorted(functions, key=lambda f: (-key(f), f["function"]))


def with_run(report: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The report over the run as the viewer sees it: a live run has no totals in its row yet,
    so its counts come from its sessions (:func:`.data.with_totals`)."""
    loss = dict(report["loss"])
    for k in loss:
        if run.get(k) is not None:
            loss[k] = run[k]
    return dict(report, run=run, loss=loss)


def api_stats(report: dict[str, Any], run: dict[str, Any], sort: str | None) -> dict[str, Any]:
    """``/api/runs/<id>/stats``: the report, functions in the asked order, and the few totals
    the page's live refresh shows."""
    out = with_run(report, run)
    out["functions"] = sorted_functions(report["functions"], sort_key(sort))
    out["sort"] = sort_key(sort)
    out["function_count"] = len(report["functions"])
    out["has_loss"] = any(out["loss"].get(k) for k in LOST_KEYS)
    return out


def page_stats(report: dict[str, Any], run: dict[str, Any], sort: str | None, *,
               limit: int = 50) -> dict[str, Any]:
    """Everything the stats page shows, grouped for its sections."""
    out = api_stats(report, run, sort)
    clusters = out["error_clusters"]
    raised: dict[str, dict[str, int]] = {}
    for c in clusters:
        per_fn = raised.setdefault(c["function"], {})
        per_fn[c["exception"]] = per_fn.get(c["exception"], 0) + c["count"]
    out["hotspots"] = [dict(f, exception_types=sorted(raised.get(f["function"], {}).items(),
                                                      key=lambda kv: (-kv[1], kv[0])))
                       for f in report["error_hotspots"][:limit]]
    out["functions"] = out["functions"][:limit]
    out["unhandled"] = [c for c in clusters if not c["handled"]][:limit]
    out["handled"] = [c for c in clusters if c["handled"]][:limit]
    out["variant_count"] = len(report["variants"])
    out["variants"] = report["variants"][:limit]
    out["drift_count"] = len(report["drift"])
    out["drift"] = sorted(report["drift"], key=lambda d: (d["seen_ns"] or 0, d["function"]))[
        :limit * 4]
    out["processes"] = [dict(p, spark=sparkline(p["samples"])) for p in report["processes"]]
    out["loss_items"] = [{"key": k, "label": label, "hint": hint,
                          "value": out["loss"].get(k) or 0} for k, label, hint in LOSS]
    return out


def sparkline(samples: list[dict[str, Any]], key: str = "rss_bytes") -> str:
    """SVG polyline points of ``key`` over time, in a SPARK_W × SPARK_H box ('' when fewer
    than two samples). Built here so the page needs no chart library."""
    pts = [(s["ts_ns"], s[key]) for s in samples if s.get(key) is not None]
    if len(pts) < 2:
        return ""
    if len(pts) > SPARK_W:  # one point per pixel column is all a sparkline can show
        step = len(pts) / SPARK_W
        pts = [pts[int(i * step)] for i in range(SPARK_W)] + [pts[-1]]
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span_t, span_v = (t1 - t0) or 1, (hi - lo) or 1
    return " ".join(f"{(t - t0) * SPARK_W / span_t:.1f},"
                    f"{SPARK_H - 1 - (v - lo) * (SPARK_H - 2) / span_v:.1f}" for t, v in pts)
