"""Shared pieces of the export formats: input contracts, tree walking, label text.

Every exporter is a pure function over the plain dicts the store produces. Those dicts are
treated as untrusted: function names and shapes may hold any character, a parent may be
missing (retention, dropped events) and, in corrupt data, parent links may even form a cycle.
The walkers here never recurse (recorded programs recurse deeper than Python's own stack
limit) and visit every call exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple


class Visit(NamedTuple):
    """One step of :func:`walk_calls`: a call, its parent in this walk, and its depth."""

    node: Mapping[str, Any]
    parent: Mapping[str, Any] | None
    depth: int
    order: int  # position in the walk (pre-order), a stable key for per-call state
    parent_order: int | None  # the parent's ``order``; None for a root


def start_ns(node: Mapping[str, Any]) -> int:
    """The call's start time; a missing start counts as 0 rather than failing the export."""
    value = node.get("timestamp_start")
    return int(value) if value is not None else 0


def end_ns(node: Mapping[str, Any]) -> int:
    """The call's end time, never before its start (an unfinished call has no end yet)."""
    start = start_ns(node)
    value = node.get("timestamp_end")
    return max(int(value), start) if value is not None else start


def duration_ns(node: Mapping[str, Any]) -> int:
    return end_ns(node) - start_ns(node)


def walk_calls(nodes: Sequence[Mapping[str, Any]]) -> Iterator[Visit]:
    """Visit every call once, parents before children, children in start order.

    Calls whose parent is absent from the session are walked as roots. Calls caught in a
    parent cycle (corrupt data) are still visited: the first one met starts a new tree.
    """
    by_id: dict[Any, int] = {}
    for position, node in enumerate(nodes):
        by_id.setdefault(node.get("id"), position)
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for position, node in enumerate(nodes):
        parent_position = by_id.get(node.get("parent_id"))
        if node.get("parent_id") is None or parent_position is None or parent_position == position:
            roots.append(position)
        else:
            children.setdefault(parent_position, []).append(position)
    for kids in children.values():
        kids.sort(key=lambda p: (start_ns(nodes[p]), p))

    visited = [False] * len(nodes)
    counter = 0
    # Roots first, then anything a cycle kept out of reach.
    for start in [*roots, *range(len(nodes))]:
        if visited[start]:
            continue
        visited[start] = True
        # (position in nodes, parent's position, parent's walk index, depth)
        stack: list[tuple[int, int | None, int | None, int]] = [(start, None, None, 0)]
        while stack:
            position, parent_position, parent_index, depth = stack.pop()
            parent = nodes[parent_position] if parent_position is not None else None
            yield Visit(nodes[position], parent, depth, counter, parent_index)
            # Reversed so the earliest child is popped (and so visited) first.
            for child in reversed(children.get(position, ())):
                if not visited[child]:
                    visited[child] = True
                    stack.append((child, position, counter, depth + 1))
            counter += 1


def split_function(function_name: str) -> tuple[str, str]:
    """``"shop.api:Cart.add"`` → ``("shop.api", "Cart.add")``; no colon means no module."""
    module, sep, qualname = function_name.partition(":")
    return (module, qualname) if sep else ("", function_name)


def shorten(text: str, limit: int = 60) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_input_shape(shape: Any) -> str:
    """``{"item_id": "int"}`` → ``"(item_id: int)"``; None (a call whose shapes the budget
    did not sample) → ``"(…)"``; anything else is shown as it is."""
    if isinstance(shape, Mapping):
        return "(" + ", ".join(f"{name}: {kind}" for name, kind in shape.items()) + ")"
    return "(…)" if shape is None else str(shape)


def format_output_shape(shape: Any) -> str:
    """A shape string; None (not sampled, or a call that raised) → ``"…"``."""
    return "…" if shape is None else str(shape)


def signature_text(node: Mapping[str, Any], limit: int = 60) -> str:
    """``in → out`` for labels, each side shortened so one huge shape cannot swamp a graph."""
    inputs = shorten(format_input_shape(node.get("input_shape")), limit)
    output = shorten(format_output_shape(node.get("output_shape")), limit)
    return f"{inputs} → {output}"


def format_ms(ns: int) -> str:
    """Milliseconds to the nanosecond, without trailing zeros: most calls take microseconds."""
    text = f"{ns / 1e6:.6f}".rstrip("0").rstrip(".")
    return f"{text} ms"


# Characters no label format should carry through: C0/C1 controls other than line breaks,
# and lone surrogates (which cannot even be encoded as UTF-8 on the way to a file).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_BREAK = re.compile("\r\n|\r|\n|\u2028|\u2029")


def printable(text: str, newline: str = " ") -> str:
    """Replace line breaks by ``newline`` and unprintable characters by U+FFFD."""
    # A function, not a template: re.sub would read a backslash in ``newline`` as an escape.
    return _UNPRINTABLE.sub("\ufffd", _LINE_BREAK.sub(lambda _: newline, text))
