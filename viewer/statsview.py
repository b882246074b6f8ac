"""Statistics of one run: functions by calls and time, error hotspots, frequent paths, data loss."""

from __future__ import annotations

from typing import Any

from flowagent.store import queries
from flowagent.store.sqlite import SQLiteStore

SORTS = {
    "calls": lambda f: f["calls"],
    "total": lambda f: f["total_ns"],
    "self": lambda f: f["self_ns"],
    "errors": lambda f: f["errors"],
    "avg": lambda f: f["avg_ns"] or 0,
}
LOSS_KEYS = ("dropped_events", "dropped_batches", "corrupt_frames", "duplicate_frames",
             "agent_errors")


def run_stats(store: SQLiteStore, run: dict[str, Any], contract: dict[str, Any], *,
              sort: str = "calls", limit: int = 50) -> dict[str, Any]:
    """Everything the stats page shows, as plain JSON-ready data."""
    functions = [{
        "function_name": n["id"], "module": n["module"], "kind": n.get("kind"),
        "calls": n["occurrences"], "errors": n["errors"], "partials": n["partials"],
        "total_ns": n["total_ns"], "self_ns": n["self_ns"], "min_ns": n["min_ns"],
        "max_ns": n["max_ns"],
        "avg_ns": n["total_ns"] // n["occurrences"] if n["occurrences"] else None,
    } for n in contract["nodes"]]
    key = SORTS.get(sort, SORTS["calls"])
    functions.sort(key=lambda f: (-key(f), f["function_name"]))
    exc = queries.exception_types(store, run["run_id"])
    by_function: dict[str, list[dict[str, Any]]] = {}
    for row in exc:
        by_function.setdefault(row["function_name"], []).append(
            {"exception_type": row["exception_type"], "count": row["count"]})
    hotspots = [dict(f, error_rate=f["errors"] / f["calls"] if f["calls"] else 0.0,
                     exception_types=by_function.get(f["function_name"], []))
                for f in functions if f["errors"]]
    hotspots.sort(key=lambda f: (-f["errors"], f["function_name"]))
    processes = [{k: p.get(k) for k in ("pid", "ppid", "started_ns", "produced_events",
                                         "stored_events", "closed", *LOSS_KEYS)}
                 for p in store.processes(run["run_id"])]
    loss = {k: run.get(k) or 0 for k in LOSS_KEYS}
    return {
        "run_id": run["run_id"], "sort": sort if sort in SORTS else "calls",
        "function_count": len(functions), "functions": functions[:limit],
        "hotspots": hotspots[:limit],
        "frequent_paths": contract.get("stats", {}).get("frequent_paths", []),
        "total_sessions": contract.get("stats", {}).get("total_sessions", 0),
        "data_loss": loss, "has_loss": any(loss.values()), "processes": processes,
    }
