"""Graphviz DOT export of a session tree and of the merged architecture graph.

Node ids are generated (``n0``, ``n1``, ...) and every name or shape goes into a quoted plain
label through :func:`quote`, so no recorded name can end a string, open an HTML label, start
a Graphviz escape such as ``\\N``, or be read as a character entity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from flowagent.reports.export._common import (
    duration_ns,
    format_ms,
    printable,
    signature_text,
    split_function,
    walk_calls,
)
from flowagent.model.contract import MergedGraph, SessionGraph

_RED = "#d62728"
_ORANGE = "#ff7f0e"
_GREY = "#555555"
_BRANCH_STYLE = {
    "error": f'color="{_RED}", fontcolor="{_RED}", style=dashed',
    "partial": f'color="{_ORANGE}", fontcolor="{_ORANGE}"',
}
_HEADER = [
    '  graph [fontname="Helvetica", fontsize=11, labelloc=t];',
    '  node [shape=box, style="rounded,filled", fillcolor="#f7f7f7", fontname="Helvetica",'
    " fontsize=10];",
    f'  edge [fontname="Helvetica", fontsize=9, color="{_GREY}"];',
]


def escape(text: str) -> str:
    """Make ``text`` safe inside a double-quoted DOT string, shown exactly as recorded.

    Backslash and quote are the language's own escapes. ``&`` is escaped because Graphviz
    decodes character entities even in plain labels (``&lt;`` would show as ``<``). A line
    break in a name becomes a centred line break; control characters become U+FFFD.
    """
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return printable(text, newline="\\n")


def quote(text: Any) -> str:
    return '"' + escape(str(text)) + '"'


def _label(*lines: str) -> str:
    """A multi-line label: each line escaped on its own, joined by DOT's ``\\n`` escape."""
    return '"' + "\\n".join(escape(line) for line in lines) + '"'


def _node_colors(result_type: Any) -> str:
    if result_type == "error":
        return f', color="{_RED}", fontcolor="{_RED}", penwidth=2'
    if result_type == "partial":
        return f', color="{_ORANGE}", penwidth=2'
    return ""


def session_dot(g: SessionGraph) -> str:
    """One session as a top-down call tree.

    Each call shows ``function (duration ms)`` and its ``in → out`` shapes; calls that
    raised are red (with the exception type), calls that handled an error below them orange.
    """
    title = f"{g.get('name') or g.get('session_id', '')} [{g.get('result_type', '?')}]"
    lines = [f"digraph {quote('session ' + str(g.get('session_id', '')))} {{"]
    lines += _HEADER
    lines.append(f"  graph [rankdir=TB, label={_label(title)}];")
    ids: dict[Any, str] = {}
    for visit in walk_calls(g.get("nodes", ())):
        node = visit.node
        node_id = f"n{visit.order}"
        ids.setdefault(node.get("id"), node_id)
        text = [
            f"{node.get('function_name', '?')} ({format_ms(duration_ns(node))})",
            signature_text(node),
        ]
        if node.get("result_type") == "error":
            text.append(f"raised {node.get('exception_type') or 'an exception'}")
        lines.append(f"  {node_id} [label={_label(*text)}{_node_colors(node.get('result_type'))}];")
    for edge in _known_edges(g.get("edges", ()), ids):
        style = _BRANCH_STYLE.get(edge.get("branch", ""))
        attrs = f" [{style}]" if style else ""
        lines.append(f"  {ids[edge['from']]} -> {ids[edge['to']]}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _known_edges(
    edges: Iterable[Mapping[str, Any]], ids: Mapping[Any, str]
) -> Iterable[Mapping[str, Any]]:
    # An edge to a call that is not in the graph would make Graphviz invent a bare node named
    # by our generated id; leaving it out is the honest rendering of what we know.
    return (edge for edge in edges if edge.get("from") in ids and edge.get("to") in ids)


def _pen_width(frequency: Any) -> str:
    """Wider for hotter edges, on a log scale so one hot loop cannot dwarf the rest."""
    try:
        count = max(float(frequency), 1.0)
    except (TypeError, ValueError):
        count = 1.0
    return f"{min(1.0 + math.log(count), 8.0):.2f}"


def _merged_label(node: Mapping[str, Any]) -> str:
    function_name = str(node.get("function_name") or node.get("id") or "?")
    module, qualname = split_function(function_name)
    module = str(node.get("module") or module)
    qualname = str(node.get("qualname") or qualname)
    occurrences = int(node.get("occurrences") or 0)
    counts = f"{occurrences} call{'' if occurrences == 1 else 's'}"
    errors = int(node.get("errors") or 0)
    if errors:
        counts += f", {errors} error{'' if errors == 1 else 's'}"
    return _label(qualname, module, counts) if module else _label(qualname, counts)


def merged_dot(g: MergedGraph) -> str:
    """The architecture graph: one box per function, one cluster per module.

    Edge width grows with log(frequency) and the label is the frequency; error branches are
    red and dashed, partial ones orange; functions that raised have a red border.
    """
    lines = ["digraph flowagent {"]
    lines += _HEADER
    sessions = (g.get("stats") or {}).get("total_sessions")
    title = "flowagent architecture" + (f" ({sessions} sessions)" if sessions is not None else "")
    lines.append(f"  graph [rankdir=LR, compound=true, label={_label(title)}];")

    ids: dict[Any, str] = {}
    by_module: dict[str, list[str]] = {}
    for node in g.get("nodes", ()):
        if node.get("id") in ids:
            continue
        node_id = f"n{len(ids)}"
        ids[node.get("id")] = node_id
        module = str(node.get("module") or split_function(str(node.get("id") or ""))[0])
        color = ""
        if node.get("errors"):
            color = f', color="{_RED}", penwidth=2'
        elif node.get("partials"):
            color = f', color="{_ORANGE}", penwidth=2'
        by_module.setdefault(module, []).append(
            f"{node_id} [label={_merged_label(node)}{color}];"
        )
    for number, (module, members) in enumerate(by_module.items()):
        indent = "  "
        if module:
            lines.append(f'  subgraph "cluster_{number}" {{')
            lines.append(f'    graph [label={quote(module)}, style="rounded", color="#bbbbbb"];')
            indent = "    "
        lines += [indent + member for member in members]
        if module:
            lines.append("  }")

    # Edges may name a function the node list lacks (a truncated store): give it a plain box.
    for edge in g.get("edges", ()):
        for end in (edge.get("from"), edge.get("to")):
            if end not in ids:
                ids[end] = f"n{len(ids)}"
                lines.append(f"  {ids[end]} [label={quote(end)}];")
        frequency = edge.get("frequency", 0)
        attrs = [f"label={quote(frequency)}", f"penwidth={_pen_width(frequency)}"]
        style = _BRANCH_STYLE.get(edge.get("branch", ""))
        if style:
            attrs.append(style)
        lines.append(f"  {ids[edge.get('from')]} -> {ids[edge.get('to')]} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
