"""Mermaid flowchart export of a session tree and of the merged architecture graph.

Mermaid's grammar gives meaning to many characters even inside a label (``"`` ends it,
``#name;`` is an entity, ``%%{`` opens a directive, a backtick starts markdown), so every
recorded name goes through :func:`escape`, which turns each such character into a numeric
entity code that Mermaid decodes only when it draws the text. Node and subgraph ids are
generated (``n0``, ``m0``), never derived from names, so no name can collide with a keyword
such as ``end``.
"""

from __future__ import annotations

from collections.abc import Mapping
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

_ENTITIES = str.maketrans(
    {
        '"': "#quot;",
        "#": "#35;",
        "%": "#37;",
        "&": "#38;",
        ";": "#59;",
        "<": "#60;",
        ">": "#62;",
        "[": "#91;",
        "]": "#93;",
        "`": "#96;",
        "{": "#123;",
        "|": "#124;",
        "}": "#125;",
    }
)
_RED = "#d62728"
_ORANGE = "#ff7f0e"
_CLASS_DEFS = [
    f"  classDef error stroke:{_RED},stroke-width:2px,color:{_RED}",
    f"  classDef partial stroke:{_ORANGE},stroke-width:2px",
]
_LINK_STYLE = {
    "error": f"stroke:{_RED},stroke-width:2px,color:{_RED}",
    "partial": f"stroke:{_ORANGE},stroke-width:2px",
}


def escape(text: Any) -> str:
    """Text safe inside a double-quoted Mermaid label, shown as recorded (line breaks as spaces)."""
    return printable(str(text)).translate(_ENTITIES)


def _label(*lines: str) -> str:
    # <br/> is ours: every "<" of recorded text has already become "#60;".
    return '"' + "<br/>".join(escape(line) for line in lines) + '"'


class _Links:
    """Collects links in order, because ``linkStyle`` addresses them by position."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.by_branch: dict[str, list[int]] = {}

    def add(self, source: str, target: str, branch: Any, label: str | None = None) -> None:
        arrow = "-.->" if branch in ("error", "partial") else "-->"
        text = f'|"{escape(label)}"|' if label is not None else ""
        self.lines.append(f"  {source} {arrow}{text} {target}")
        if branch in _LINK_STYLE:
            self.by_branch.setdefault(branch, []).append(len(self.lines) - 1)

    def styles(self) -> list[str]:
        return [
            f"  linkStyle {','.join(map(str, positions))} {_LINK_STYLE[branch]}"
            for branch, positions in self.by_branch.items()
        ]


def _classes(members: Mapping[str, list[str]]) -> list[str]:
    return [f"  class {','.join(ids)} {name}" for name, ids in members.items() if ids]


def session_mermaid(g: SessionGraph) -> str:
    """One session as a top-down flowchart: ``function``, duration, ``in → out`` per call."""
    lines = ["flowchart TD"]
    title = f"{g.get('name') or g.get('session_id', '')} [{g.get('result_type', '?')}]"
    lines.append(f"  %% session {escape(g.get('session_id', ''))}: {escape(title)}")
    ids: dict[Any, str] = {}
    classes: dict[str, list[str]] = {"error": [], "partial": []}
    for visit in walk_calls(g.get("nodes", ())):
        node = visit.node
        node_id = f"n{visit.order}"
        ids.setdefault(node.get("id"), node_id)
        text = [
            str(node.get("function_name", "?")),
            format_ms(duration_ns(node)),
            signature_text(node),
        ]
        if node.get("result_type") == "error":
            text.append(f"raised {node.get('exception_type') or 'an exception'}")
        lines.append(f"  {node_id}[{_label(*text)}]")
        if node.get("result_type") in classes:
            classes[node["result_type"]].append(node_id)
    links = _Links()
    for edge in g.get("edges", ()):
        if edge.get("from") in ids and edge.get("to") in ids:
            links.add(ids[edge["from"]], ids[edge["to"]], edge.get("branch"))
    return "\n".join(lines + links.lines + _CLASS_DEFS + _classes(classes) + links.styles()) + "\n"


def merged_mermaid(g: MergedGraph) -> str:
    """The architecture graph, left to right, one subgraph per module.

    Edge labels are frequencies; error and partial branches are dotted and coloured.
    """
    lines = ["flowchart LR"]
    ids: dict[Any, str] = {}
    by_module: dict[str, list[str]] = {}
    classes: dict[str, list[str]] = {"error": [], "partial": []}
    for node in g.get("nodes", ()):
        if node.get("id") in ids:
            continue
        node_id = f"n{len(ids)}"
        ids[node.get("id")] = node_id
        module, qualname = split_function(str(node.get("function_name") or node.get("id") or ""))
        module = str(node.get("module") or module)
        qualname = str(node.get("qualname") or qualname)
        occurrences = int(node.get("occurrences") or 0)
        counts = f"{occurrences} call{'' if occurrences == 1 else 's'}"
        errors = int(node.get("errors") or 0)
        if errors:
            counts += f", {errors} error{'' if errors == 1 else 's'}"
            classes["error"].append(node_id)
        elif node.get("partials"):
            classes["partial"].append(node_id)
        by_module.setdefault(module, []).append(f"{node_id}[{_label(qualname, counts)}]")
    for number, (module, members) in enumerate(by_module.items()):
        if not module:
            lines += [f"  {member}" for member in members]
            continue
        lines.append(f"  subgraph m{number}[{_label(module)}]")
        lines += [f"    {member}" for member in members]
        lines.append("  end")

    links = _Links()
    for edge in g.get("edges", ()):
        for end in (edge.get("from"), edge.get("to")):
            if end not in ids:  # a function the node list lacks: still draw the edge
                ids[end] = f"n{len(ids)}"
                lines.append(f"  {ids[end]}[{_label(str(end))}]")
        links.add(
            ids[edge.get("from")], ids[edge.get("to")], edge.get("branch"),
            label=str(edge.get("frequency", 0)),
        )
    return "\n".join(lines + links.lines + _CLASS_DEFS + _classes(classes) + links.styles()) + "\n"


# -- sequenceDiagram ----------------------------------------------------------------------
# The sequence grammar has no escapes at all: message and box texts end at "#", ";" or a line
# break, and a participant's alias also at "<", "=", ">", "-", ":" and ",". So entity codes
# (which need "#" and ";") cannot be used there, and each reserved character becomes a
# look-alike that reads the same; "<" and ">" do so everywhere, because Mermaid would take
# "<name>" in a label for markup and drop it, "&" because the browser would decode "&lt" and
# "%" because "%%" anywhere in a line starts a comment that swallows the rest of it.
_SEQ_TEXT = str.maketrans({"#": "＃", ";": "；", "<": "‹", ">": "›", "%": "％", "&": "＆"})
_SEQ_ALIAS = str.maketrans({"#": "＃", ";": "；", "<": "‹", ">": "›", "%": "％", "&": "＆",
                            "=": "＝", "-": "‐", ":": "꞉", ",": "‚"})
_LANE_COLOURS = ("aliceblue", "ivory", "honeydew", "lavender")


def _seq_text(text: Any) -> str:
    return printable(str(text)).translate(_SEQ_TEXT).strip() or "…"


def session_sequence_mermaid(g: SessionGraph, limit: int = 300) -> str:
    """One session as a ``sequenceDiagram``: a participant per class or module, grouped in a
    box per thread and process, a call arrow per call (``->>``, ``-)`` into another thread)
    and a return arrow per return (``-->>``, ``--x`` when it raised), with activations."""
    from ._sequence import sequence

    model = sequence(g, limit=limit)
    lines = ["sequenceDiagram"]
    lines.append(f"  %% session {_seq_text(g.get('session_id', ''))}: {_seq_text(model.title)}")
    for number, lane in enumerate(model.lanes):
        colour = _LANE_COLOURS[number % len(_LANE_COLOURS)]
        lines.append(f"  box {colour} {_seq_text(lane.label)}")
        for line in model.lifelines:
            if line.lane == lane.id:
                alias = printable(line.label).translate(_SEQ_ALIAS).strip() or "…"
                lines.append(f"    participant {line.id} as {alias}")
        lines.append("  end")
    for m in model.messages:
        if m.kind == "call":
            arrow = "-)" if m.asynchronous else "->>"
            # A self-call activates its lifeline again: Mermaid draws nested activations.
            lines.append(f"  {m.source}{arrow}+{m.target}: {_seq_text(m.text)}")
        else:
            arrow = "--x" if m.result == "error" else "-->>"
            lines.append(f"  {m.source}{arrow}-{m.target}: {_seq_text(m.text)}")
    if model.left_out:
        first = model.lifelines[0].id if model.lifelines else None
        if first:
            lines.append(f"  note over {first}: {model.left_out} more calls not drawn")
    return "\n".join(lines) + "\n"
