"""A session together with the requests it caused in other runs (other services).

The session and sequence pages (and their API twins) take ``?run=A&run=B``: with runs other
than the session's own selected, the session is read as a distributed session
(:mod:`flowagent.reports.stitch`), each request another run served under the client call that made
it. :func:`related_runs` finds the runs of this store that took part in the session's traces,
which the session page offers as that selection.
"""

from __future__ import annotations

from typing import Any

from flask import request

from flowagent.reports import stitch
from flowagent.store import traces

from .data import get_store

MAX_RUNS = 16


def selected_runs(own_run_id: str) -> list[str]:
    """The runs read together with the session's own (its own first), or [] for none."""
    store = get_store()
    wanted = [r[:200] for r in request.args.getlist("run")[:MAX_RUNS] if r]
    others = [r for r in dict.fromkeys(wanted) if r != own_run_id and store.run(r) is not None]
    return [own_run_id, *others] if others else []


def session_graph(session_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """The session's graph, stitched across the selected runs when there are any."""
    store = get_store()
    runs = selected_runs(row["run_id"])
    if runs:
        refs = [stitch.RunRef.of(store, r) for r in runs]
        graph = stitch.session(refs, 0, session_id)
    else:
        graph = store.session_graph(session_id)
    return graph or {"nodes": [], "edges": []}


def related_runs(session_id: str, own_run_id: str) -> list[str]:
    """Other runs of this store that served or made requests of this session's traces."""
    store = get_store()
    found = traces.trace_runs(store, traces.session_traces(store, session_id))
    return [r for r in found if r != own_run_id]
