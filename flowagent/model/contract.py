"""The plain-dict contracts of the read side: a session graph and the merged graph.

The store produces them, the exports, the reports and the viewer read them, and the JSON
export writes them out as they are (README, "JSON export"), so their keys are a contract with
users as well as between the packages.
"""

from __future__ import annotations

from typing import Any, TypedDict


class CallNode(TypedDict, total=False):
    """One call of a session graph (the store's contract)."""

    id: int
    parent_id: int | None
    function_name: str
    caller: str | None
    input_shape: dict[str, str] | None  # None: shapes not sampled for this call
    output_shape: str | None
    result_type: str
    exception_type: str | None
    timestamp_start: int
    timestamp_end: int | None
    thread: int
    thread_name: str
    pid: int


# "from" is a Python keyword, hence the functional form.
SessionEdge = TypedDict("SessionEdge", {"from": int, "to": int, "branch": str})


class SessionGraph(TypedDict, total=False):
    """One session: its calls in start order and the parent→child edges between them."""

    session_id: str
    run_id: str
    name: str
    result_type: str
    complete: bool
    nodes: list[CallNode]
    edges: list[SessionEdge]


class MergedGraph(TypedDict, total=False):
    """The architecture graph merged over all sessions (the store's contract)."""

    graph_type: str
    runs: list[str]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    stats: dict[str, Any]
