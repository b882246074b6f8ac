"""Stored rows → the export contract's session graph: the same for every store, so each
store only fetches the session's row, its run's functions, its process's description and
its calls (store layout, :data:`flowagent.store.chunks.STORE_FIELDS`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..model.shapes import input_shape
from . import chunks as C
from .api import RESULTS

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any


def session_graph(session: Mapping[str, Any], fns: Mapping[int, Mapping[str, Any]],
                  info: Mapping[str, Any], call_rows: Iterable[tuple[Any, ...]],
                  shape_text: Callable[[int | None], str | None]) -> dict[str, Any]:
    """The session graph (timestamps in unix ns) of one stored session."""
    threads = {int(k): v for k, v in info.get("threads", {}).items()}
    calls = [dict(zip(C.STORE_FIELDS, c)) for c in call_rows]
    nodes, edges = [], []
    for c in calls:
        fn = fns.get(c["fid"], {})
        params = fn.get("params", [])
        in_shape = shape_text(c["in_sid"])
        nodes.append({
            "id": c["call_id"],
            "parent_id": c["parent_id"] or None,
            "function_name": fn.get("name", "?"),
            "caller": fns[c["caller_fid"]]["name"] if c["caller_fid"] in fns else None,
            "input_shape": input_shape(params, in_shape) if in_shape else None,  # None: not sampled
            "output_shape": shape_text(c["out_sid"]),
            "result_type": RESULTS[c["result"]],
            "exception_type": shape_text(c["exc_sid"]),
            "timestamp_start": c["t0"], "timestamp_end": c["t1"],
            "cpu_ns": c["cpu_ns"] or None,
            "thread": c["thread"], "thread_name": threads.get(c["thread"]),
            "pid": session["pid"],
        })
        if c["parent_id"]:
            edges.append({"from": c["parent_id"], "to": c["call_id"],
                          "branch": RESULTS[c["result"]]})
    return {"session_id": session["session_id"], "run_id": session["run_id"],
            "name": session["name"], "result_type": session["result"],
            "complete": bool(session["complete"]), "nodes": nodes, "edges": edges}
