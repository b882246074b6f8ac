"""Collapsed stacks (``root;child;leaf 1234``), the input of flamegraph.pl, inferno and speedscope.

One line per distinct call stack over all sessions, weighted by self time in nanoseconds: a
call's duration minus the durations of its children, never negative (children of concurrent
asyncio tasks can add up to more than their parent's wall time). Equal stacks of different
sessions are summed. Lines come out sorted, so equal inputs give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TextIO

from flowagent.reports.export._common import duration_ns, printable, walk_calls
from flowagent.model.contract import SessionGraph


def frame_name(function_name: object) -> str:
    """A frame name the format can carry: ``;`` separates frames and a line ends a record."""
    return printable(str(function_name)).replace(";", ":")


class _StackTrie:
    """Distinct stacks as a trie, so deep recursion costs one entry per frame, not per path."""

    def __init__(self) -> None:
        self.child: dict[tuple[int, str], int] = {}
        self.parent: list[int] = []
        self.name: list[str] = []
        self.weight: list[int] = []

    def node(self, parent: int, name: str) -> int:
        key = (parent, name)
        index = self.child.get(key)
        if index is None:
            index = self.child[key] = len(self.name)
            self.parent.append(parent)
            self.name.append(name)
            self.weight.append(0)
        return index

    def path(self, index: int) -> str:
        names = []
        while index >= 0:
            names.append(self.name[index])
            index = self.parent[index]
        return ";".join(reversed(names))


def collapsed_stacks(sessions: Iterable[SessionGraph]) -> Iterator[str]:
    """Yield ``"frame;frame;frame <self_ns>"`` lines (no newline), aggregated over sessions."""
    trie = _StackTrie()
    for session in sessions:
        stack_at: list[int] = []  # walk index → trie index of that call's stack
        durations: list[int] = []
        children_ns: list[int] = []  # walk index → sum of its children's durations
        for visit in walk_calls(session.get("nodes", ())):
            parent = visit.parent_order
            name = frame_name(visit.node.get("function_name", "?"))
            stack_at.append(trie.node(stack_at[parent] if parent is not None else -1, name))
            duration = duration_ns(visit.node)
            durations.append(duration)
            children_ns.append(0)
            if parent is not None:
                children_ns[parent] += duration
        # Self time needs the children's total, known only after the whole walk.
        for at, index in enumerate(stack_at):
            trie.weight[index] += max(durations[at] - children_ns[at], 0)
    lines = [f"{trie.path(index)} {trie.weight[index]}" for index in range(len(trie.name))]
    yield from sorted(lines)


def write_collapsed(sessions: Iterable[SessionGraph], out: TextIO) -> int:
    """Write :func:`collapsed_stacks` to ``out``, one per line; returns the number of lines."""
    count = 0
    for line in collapsed_stacks(sessions):
        out.write(line + "\n")
        count += 1
    return count
