"""One session as the session page shows it: a flat, pre-ordered call tree and a timeline.

The tree is flat rows with a depth rather than nested markup: recorded programs recurse far
deeper than a template (or the browser's HTML parser, which flattens nesting past 512 levels)
can follow. Walking reuses the exporters' iterative walker, which visits every call once even
in corrupt data. For a big session only the first levels are open at first (plus the path down
to every error), so the first render stays small; the rest is in the page, one click away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowagent.protocol.wire import RESULT_NAMES as RESULTS
from flowagent.reports.export._common import end_ns, start_ns, walk_calls
from flowagent.reports.export._timeline import Span, Timeline

from .fmt import duration, input_shape, mark

OPEN_BUDGET = 300  # rows visible at first in a big session
ERROR_PATH_BUDGET = 300  # extra rows opened to show where errors are
MAX_INDENT = 40  # deeper calls are indented like depth 40 and show their depth as a badge
# A loop makes a call with thousands of children: only the first ones are shown, then a
# "N more calls" row (which shows the next ones when clicked).
CHILD_LIMIT = 100


@dataclass(slots=True)
class Row:
    """One call as a tree row. Display strings are computed here, once: the template then
    only interpolates (and escapes) them, which keeps a 10 000-call page fast to render."""

    index: int
    id: Any
    parent: int | None
    depth: int
    function_name: str
    caller: str | None
    result: str
    exception_type: str | None
    input: str
    output: str | None
    start_ns: int
    duration_ns: int
    thread_name: str
    nth: int = 0  # position among its siblings
    more: int = 0  # siblings from this one on hidden by CHILD_LIMIT (set on the first one)
    children: int = 0
    open: bool = False
    visible: bool = False
    css: str = ""
    mark: str = ""
    duration: str = ""
    outcome: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]


def tree_rows(graph: dict[str, Any], budget: int = OPEN_BUDGET) -> list[Row]:
    """Rows in pre-order: call fields plus ``depth``, ``children``, ``open`` and ``visible``."""
    nodes = graph.get("nodes", [])
    origin = min((start_ns(n) for n in nodes), default=0)
    rows: list[Row] = []
    for visit in walk_calls(nodes):
        n = visit.node
        result = n.get("result_type")
        t0 = start_ns(n)
        rows.append(Row(
            index=visit.order, id=n.get("id"), parent=visit.parent_order, depth=visit.depth,
            function_name=n.get("function_name") or "?", caller=n.get("caller"),
            result=result if result in RESULTS else "incomplete",
            exception_type=n.get("exception_type"), input=input_shape(n.get("input_shape")),
            output=n.get("output_shape"), start_ns=t0 - origin, duration_ns=end_ns(n) - t0,
            thread_name=n.get("thread_name") or str(n.get("thread", ""))))
    for row in rows:
        if row.parent is not None:
            row.nth = rows[row.parent].children
            rows[row.parent].children += 1
    _choose_open(rows, budget)
    for row in rows:
        row.css = (f"row r-{row.result} d{min(row.depth, MAX_INDENT)}"
                   + ("" if row.visible else " hidden") + (" open" if row.open else ""))
        row.mark = mark(row.result)
        row.duration = duration(row.duration_ns)
        row.outcome = ((row.exception_type or "error") if row.result == "error"
                       else ("?" if row.output is None else row.output))
    return rows


def _choose_open(rows: list[Row], budget: int) -> None:
    """Open every level that fits the budget, then the ancestors of errors."""
    per_depth: dict[int, int] = {}
    for row in rows:
        per_depth[row.depth] = per_depth.get(row.depth, 0) + 1
    deepest, shown = 0, 0  # the deepest level shown at first; roots and their children always
    for depth in sorted(per_depth):
        shown += per_depth[depth]
        if shown > budget:
            break
        deepest = depth
    deepest = max(deepest, 1)
    for row in rows:
        row.open = row.depth < deepest and row.children > 0
    extra = 0
    for row in rows:
        if row.result != "error" or extra > ERROR_PATH_BUDGET:
            continue
        parent = row.parent
        while parent is not None and not rows[parent].open:
            rows[parent].open = True
            extra += rows[parent].children
            parent = rows[parent].parent
    for row in rows:
        p = row.parent
        if p is None:
            row.visible = True
            continue
        shown = rows[p].visible and rows[p].open
        row.visible = shown and row.nth < CHILD_LIMIT
        if shown and row.nth == CHILD_LIMIT:
            row.more = rows[p].children - CHILD_LIMIT


def timeline(graph: dict[str, Any]) -> dict[str, Any]:
    """The session's calls per thread lane for a flame chart (times relative to its start).

    Spans come from the trace exporters' layout, so calls of concurrent asyncio tasks on one
    thread go to extra lanes instead of being drawn on top of each other.
    """
    tracks = Timeline().place(graph)  # type: ignore[arg-type]
    nodes = graph.get("nodes", [])
    origin = min((start_ns(n) for n in nodes), default=0)
    names: dict[str, int] = {}
    out_tracks = []
    for track in tracks:
        spans: list[list[Any]] = []
        stack: list[Span] = []
        height = 0
        for span in track.spans:
            while stack and not (stack[-1].start <= span.start and span.end <= stack[-1].end):
                stack.pop()
            level = len(stack)
            stack.append(span)
            height = max(height, level + 1)
            name = span.node.get("function_name") or "?"
            fn = names.setdefault(name, len(names))
            result = RESULTS.index(span.node.get("result_type") or "incomplete") \
                if span.node.get("result_type") in RESULTS else 3
            # The span names its call by tree row (pre-order position, as in tree_rows).
            spans.append([span.order, span.start - origin, span.end - origin, level, fn,
                          result])
        label = track.thread_name + (f" · lane {track.lane}" if track.lane else "")
        if len({t.pid for t in tracks}) > 1:
            label = f"pid {track.pid} · {label}"
        out_tracks.append({"label": label, "height": height, "spans": spans})
    end = max((end_ns(n) for n in nodes), default=origin)
    return {"duration_ns": end - origin, "functions": list(names), "results": list(RESULTS),
            "tracks": out_tracks}
