"""speedscope export: evented profiles of the recorded sessions, sampled profile of stacks.

File format: https://www.speedscope.app/file-format-schema.json. One ``"evented"`` profile
per thread lane (see :mod:`flowagent.export._timeline`: concurrent asyncio tasks on one
thread get extra lanes, because an evented profile is a single stack over time), with
open/close events in nanoseconds relative to the earliest call written, so every profile
shares one time axis. The frames list is shared by all profiles.

Unlike the Chrome trace this is not streamed: the frame table and each profile's event list
must be complete before the file can be written, and speedscope itself loads the whole file.
Events are kept as small tuples to keep that cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from flowagent.export._common import SessionGraph, split_function
from flowagent.export._timeline import Timeline

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


class _Frames:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.frames: list[dict[str, str]] = []

    def get(self, name: str) -> int:
        position = self.index.get(name)
        if position is None:
            position = self.index[name] = len(self.frames)
            frame = {"name": name}
            module = split_function(name)[0]
            if module:
                frame["file"] = module
            self.frames.append(frame)
        return position


def _document(name: str, frames: _Frames, profiles: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "name": name,
        "exporter": "flowagent",
        "activeProfileIndex": 0,
        "shared": {"frames": frames.frames},
        "profiles": profiles,
    }


def _dump(document: dict[str, Any], out: TextIO) -> None:
    json.dump(document, out, ensure_ascii=True, separators=(",", ":"))
    out.write("\n")


def write_speedscope(
    sessions: Iterable[SessionGraph], out: TextIO, *, name: str = "flowagent"
) -> None:
    """Write ``sessions`` as a speedscope file of evented profiles, one per thread lane."""
    frames = _Frames()
    # (pid, thread, lane) → (profile name, events as (type, frame, absolute ns)).
    lanes: dict[tuple[Any, Any, int], tuple[str, list[tuple[str, int, int]]]] = {}
    timeline = Timeline()
    for session in sessions:
        for track in timeline.place(session):
            key = (track.pid, track.thread, track.lane)
            if key not in lanes:
                title = f"{track.thread_name} (pid {track.pid})"
                lanes[key] = (title + (f" async lane {track.lane}" if track.lane else ""), [])
            events = lanes[key][1]
            # Spans of a track nest and are in start order (longer first), so a stack turns
            # them into LIFO open/close events with nondecreasing times.
            stack: list[tuple[int, int, int]] = []  # (frame, start, end)
            for span in track.spans:
                while stack and not (stack[-1][1] <= span.start and span.end <= stack[-1][2]):
                    frame, _, end = stack.pop()
                    events.append(("C", frame, end))
                frame = frames.get(str(span.node.get("function_name", "?")))
                events.append(("O", frame, span.start))
                stack.append((frame, span.start, span.end))
            while stack:
                frame, _, end = stack.pop()
                events.append(("C", frame, end))

    base = min((events[0][2] for _, events in lanes.values() if events), default=0)
    profiles = [
        {
            "type": "evented",
            "name": title,
            "unit": "nanoseconds",
            "startValue": events[0][2] - base,
            "endValue": events[-1][2] - base,
            "events": [
                {"type": kind, "frame": frame, "at": at - base} for kind, frame, at in events
            ],
        }
        for title, events in lanes.values()
        if events
    ]
    _dump(_document(name, frames, profiles), out)


def merged_speedscope(
    stacks: Iterable[str], out: TextIO, *, name: str = "flowagent merged"
) -> None:
    """Write collapsed stacks as one ``"sampled"`` profile (weights: self time in ns).

    ``stacks`` are lines as made by :func:`flowagent.export.collapsed.collapsed_stacks`,
    ``frame;frame;frame <weight>``; this is the merged view of all sessions as a flame graph.
    Lines without a numeric weight are skipped.
    """
    frames = _Frames()
    samples: list[list[int]] = []
    weights: list[int] = []
    for line in stacks:
        stack, _, weight = line.rstrip("\r\n").rpartition(" ")
        if not stack or not (weight.isascii() and weight.isdigit()):
            continue
        samples.append([frames.get(frame) for frame in stack.split(";")])
        weights.append(int(weight))
    profile = {
        "type": "sampled",
        "name": name,
        "unit": "nanoseconds",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }
    _dump(_document(name, frames, [profile]), out)
