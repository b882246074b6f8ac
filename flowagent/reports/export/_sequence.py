"""A session as a sequence diagram: lifelines, lanes and messages (one model for the viewer
and the Mermaid ``sequenceDiagram`` export).

* A *lifeline* is where code lives: a class (``shop.cart:Cart``) for methods, else the module
  (``shop.pricing``); nested functions live with their outer function's owner.
* A *lane* is a thread of a process (``MainThread · pid 42``): lifelines are per lane, so
  work in another thread or process gets lifelines of its own, side by side.
* *Messages* come in pairs: a call (caller's lifeline → callee's, with the callee's name and
  input shape) and its return (back, with the output shape, or the exception it raised, or a
  note that it handled an error below). A call into another lane is asynchronous.

The session's entry comes from an outside actor (``client`` for a web request, ``program``
otherwise). Past ``limit`` calls the walk stops descending and counts what it left out, but
every call it drew still gets its return, so activations always balance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._common import duration_ns, format_input_shape, format_output_shape, shorten, \
    split_function, start_ns

MAX_CALLS = 300


@dataclass
class Lane:
    id: str
    label: str


@dataclass
class Lifeline:
    id: str       # p0, p1, … (never derived from a name)
    label: str    # module or module:Class
    lane: str


@dataclass
class Message:
    kind: str     # "call" | "return"
    source: str
    target: str
    text: str
    result: str   # success | error | partial | incomplete
    call: int     # the call's position in the walk (pairs a call with its return)
    depth: int
    asynchronous: bool = False
    duration_ns: int = 0


@dataclass
class SequenceModel:
    title: str
    lanes: list[Lane] = field(default_factory=list)
    lifelines: list[Lifeline] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    calls: int = 0
    left_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "calls": self.calls, "left_out": self.left_out,
                "lanes": [vars(x) for x in self.lanes],
                "lifelines": [vars(x) for x in self.lifelines],
                "messages": [vars(x) for x in self.messages]}


def owner(function_name: str) -> str:
    """The lifeline of a function: ``m:Cls.meth`` → ``m:Cls``; ``m:f`` and
    ``m:f.<locals>.g`` → ``m``."""
    module, qualname = split_function(function_name)
    if ":" in qualname:  # ``svc:m:Cls.meth`` (several services): the service's own owner
        return f"{module}:{owner(qualname)}"
    parts = qualname.split(".")
    if len(parts) > 1 and parts[1] != "<locals>" and parts[0] != "<locals>":
        return f"{module}:{parts[0]}" if module else parts[0]
    return module or qualname


def _lane_of(node: Mapping[str, Any]) -> tuple[str, str]:
    pid = node.get("pid")
    thread = node.get("thread_name") or node.get("thread") or "?"
    key = f"{pid}/{node.get('thread')}"
    return key, f"{thread} · pid {pid}" if pid is not None else str(thread)


def sequence(graph: Mapping[str, Any], limit: int = MAX_CALLS) -> SequenceModel:
    """The sequence model of a session graph (the store's session contract)."""
    nodes: Sequence[Mapping[str, Any]] = graph.get("nodes") or []
    name = str(graph.get("name") or "")
    model = SequenceModel(title=f"{name or graph.get('session_id', '')}")
    lanes: dict[str, Lane] = {}
    lines: dict[tuple[str, str], Lifeline] = {}

    def lifeline(label: str, lane_key: str, lane_label: str) -> str:
        if lane_key not in lanes:
            lanes[lane_key] = Lane(f"l{len(lanes)}", lane_label)
            model.lanes.append(lanes[lane_key])
        key = (lane_key, label)
        if key not in lines:
            lane_id = lanes[lane_key].id
            lines[key] = Lifeline(f"p{len(lines)}", label, lane_id)
            # a lane's lifelines stay side by side, so lane frames never overlap
            at = 1 + max((i for i, x in enumerate(model.lifelines) if x.lane == lane_id),
                         default=len(model.lifelines) - 1)
            model.lifelines.insert(at, lines[key])
        return lines[key].id

    by_id: dict[Any, Mapping[str, Any]] = {}
    for n in nodes:
        by_id.setdefault(n.get("id"), n)
    kids: dict[Any, list[Mapping[str, Any]]] = {}
    roots: list[Mapping[str, Any]] = []
    for n in nodes:
        parent = n.get("parent_id")
        if parent is None or parent not in by_id or parent == n.get("id"):
            roots.append(n)
        else:
            kids.setdefault(parent, []).append(n)
    for group in kids.values():
        group.sort(key=start_ns)
    roots.sort(key=start_ns)
    model.calls = len(nodes)
    if not roots:
        return model

    first_lane = _lane_of(roots[0])
    actor = lifeline("client" if name.startswith("<request>") else "program", *first_lane)
    drawn = 0
    seen: set[int] = set()
    # Explicit stack (recorded programs recurse deeper than Python may): ("call", node,
    # caller lifeline, caller lane, depth) enters a call, ("return", …) leaves it.
    stack: list[tuple[str, Mapping[str, Any], str, str, int, int, str]] = []
    for root in reversed(roots):
        stack.append(("call", root, actor, first_lane[0], 0, -1, ""))
    while stack:
        kind, node, caller, caller_lane, depth, index, me = stack.pop()
        if kind == "return":
            model.messages.append(_return(node, me, caller, index, depth))
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if drawn >= limit:
            continue  # counted below, with everything under it
        lane_key, lane_label = _lane_of(node)
        me = lifeline(owner(str(node.get("function_name") or "?")), lane_key, lane_label)
        index = drawn
        drawn += 1
        fn = str(node.get("function_name") or "?")
        text = f"{split_function(fn)[1]}{shorten(format_input_shape(node.get('input_shape')), 60)}"
        model.messages.append(Message("call", caller, me, text, str(node.get("result_type") or
                                                                     "incomplete"),
                                      index, depth, asynchronous=lane_key != caller_lane,
                                      duration_ns=duration_ns(node)))
        stack.append(("return", node, caller, caller_lane, depth, index, me))
        for child in reversed(kids.get(node.get("id"), ())):
            stack.append(("call", child, me, lane_key, depth + 1, -1, ""))
    model.left_out = len(nodes) - drawn
    return model


def _return(node: Mapping[str, Any], source: str, target: str, index: int, depth: int
            ) -> Message:
    result = str(node.get("result_type") or "incomplete")
    if result == "error":
        text = f"raise {node.get('exception_type') or 'an exception'}"
    elif result == "incomplete":
        text = "(did not return)"
    else:
        text = shorten(format_output_shape(node.get("output_shape")), 60)
        if result == "partial":
            text += " (handled an error below)"
    return Message("return", source, target, text, result, index, depth,
                   duration_ns=duration_ns(node))
