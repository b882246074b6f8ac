"""Lay calls out on timeline tracks whose slices nest properly, for the trace exports.

Chrome's trace viewer, Perfetto and speedscope all need the calls of one track to nest: a
child inside its parent, siblings one after the other. Recorded calls do not always do so:

* timestamps are wall clock and rounded, so a child can stick out of its parent by a few ns;
  such a child is clamped into its parent;
* asyncio runs several tasks on one thread, so calls of concurrent tasks (of one session, or
  of different sessions such as two requests of an ASGI app) overlap on the same thread.
  Moving one of them on top of the other would lie about who called whom, so an overlapping
  call and its subtree go to an extra *lane* of that thread instead: lane 0 is the thread
  itself, lanes 1, 2, ... are shown as separate tracks next to it.

:class:`Timeline` places one session at a time and keeps only one integer per lane, so a
stream of sessions is laid out in bounded memory. Sessions given in start order use the
fewest lanes; out of order they still nest, on more lanes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowagent.reports.export._common import end_ns, start_ns, walk_calls
from flowagent.model.contract import SessionGraph

TrackKey = tuple[Any, Any]  # (pid, thread)


@dataclass(slots=True)
class Span:
    """A call with the nesting-safe interval it gets on its track."""

    node: Mapping[str, Any]
    start: int
    end: int
    depth: int
    order: int  # pre-order position in the session, the last tie-breaker
    parent: Span | None = None  # the parent span when it is on the same thread


@dataclass(slots=True)
class Track:
    """The spans of one session on one lane of one thread, sorted for output."""

    pid: Any
    thread: Any
    lane: int
    thread_name: str
    spans: list[Span] = field(default_factory=list)


def _sort_key(span: Span) -> tuple[int, int, int, int]:
    # Start order, longer first, parent before a child with the very same interval.
    return (span.start, span.start - span.end, span.depth, span.order)


def _contains(outer: Span, inner: Span) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def _fits(stack: list[Span], span: Span, expected: Span | None) -> int | None:
    """Where ``span`` can go on a lane whose open spans are ``stack``, or None.

    Open spans that do not contain ``span`` must have ended by its start (else they would
    overlap partially); the innermost one that contains it must be ``expected`` (its parent),
    or there must be none when ``span`` starts a tree on this lane. Returns the new height.
    """
    height = len(stack)
    while height and not _contains(stack[height - 1], span):
        if stack[height - 1].end > span.start:
            return None
        height -= 1
    if expected is None:
        return height if height == 0 else None
    return height if height and stack[height - 1] is expected else None


def session_spans(session: SessionGraph) -> dict[TrackKey, list[Span]]:
    """The session's calls per (pid, thread), clamped into their parents, in sort order."""
    spans_by_key: dict[TrackKey, list[Span]] = {}
    span_at: list[Span] = []  # walk index → span, to find a parent's clamped interval
    for visit in walk_calls(session.get("nodes", ())):
        node = visit.node
        key = (node.get("pid"), node.get("thread"))
        start, end = start_ns(node), end_ns(node)
        parent = span_at[visit.parent_order] if visit.parent_order is not None else None
        if parent is not None and (parent.node.get("pid"), parent.node.get("thread")) == key:
            start = min(max(start, parent.start), parent.end)
            end = min(max(end, start), parent.end)
        else:
            parent = None  # another thread's call: it starts its own tree on this thread
        span = Span(node, start, end, visit.depth, visit.order, parent)
        span_at.append(span)
        spans_by_key.setdefault(key, []).append(span)
    for spans in spans_by_key.values():
        spans.sort(key=_sort_key)
    return spans_by_key


def _local_lanes(spans: list[Span]) -> list[list[Span]]:
    """Split one thread's spans (in sort order) into lanes on which they nest."""
    stacks: list[list[Span]] = []
    lanes: list[list[Span]] = []
    lane_of: dict[int, int] = {}  # span.order → lane
    for span in spans:
        chosen = None
        if span.parent is not None:
            lane = lane_of[span.parent.order]
            height = _fits(stacks[lane], span, span.parent)
            if height is not None:
                chosen = (lane, height)
        if chosen is None:
            for lane, stack in enumerate(stacks):
                height = _fits(stack, span, None)
                if height is not None:
                    chosen = (lane, height)
                    break
        if chosen is None:
            stacks.append([])
            lanes.append([])
            chosen = (len(stacks) - 1, 0)
        lane, height = chosen
        del stacks[lane][height:]
        stacks[lane].append(span)
        lanes[lane].append(span)
        lane_of[span.order] = lane
    return lanes


class Timeline:
    """Places sessions one after another on the lanes of each thread."""

    def __init__(self) -> None:
        # Per thread: for each lane, the end of the last span placed on it.
        self._busy_until: dict[TrackKey, list[int]] = {}

    def place(self, session: SessionGraph) -> list[Track]:
        """Tracks for ``session``: every span nests with what earlier sessions put there."""
        tracks: list[Track] = []
        for key, spans in session_spans(session).items():
            busy = self._busy_until.setdefault(key, [])
            thread_name = str(spans[0].node.get("thread_name") or f"thread {key[1]}")
            by_lane: dict[int, Track] = {}
            for lane_spans in _local_lanes(spans):
                low = lane_spans[0].start
                high = max(span.end for span in lane_spans)
                # A lane is free once everything on it has ended; the time ranges of the
                # sessions sharing a lane are then disjoint, so their spans cannot interleave.
                lane = next((i for i, until in enumerate(busy) if until <= low), len(busy))
                if lane == len(busy):
                    busy.append(high)
                else:
                    busy[lane] = max(busy[lane], high)
                track = by_lane.get(lane)
                if track is None:
                    track = by_lane[lane] = Track(key[0], key[1], lane, thread_name)
                track.spans.extend(lane_spans)
            # No re-sort: local lanes that share a lane were placed one after the other in
            # time, so appending kept start order, and a zero-length call at the boundary
            # stays with its own tree instead of sorting into the next one.
            tracks.extend(by_lane[lane] for lane in sorted(by_lane))
        return tracks
