"""speedscope export: evented profiles of the recorded sessions, sampled profile of stacks.

File format: https://www.speedscope.app/file-format-schema.json. One ``"evented"`` profile
per thread lane (see :mod:`flowagent.reports.export._timeline`: concurrent asyncio tasks on one
thread get extra lanes, because an evented profile is a single stack over time), with
open/close events in nanoseconds relative to the earliest call written, so every profile
shares one time axis. The frames list is shared by all profiles.

Streamed like the Chrome trace: a run with millions of calls exports in bounded memory
(each profile's events wait in a temporary file until the document is assembled).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from flowagent.reports.export._common import split_function
from flowagent.model.contract import SessionGraph
from flowagent.reports.export._timeline import Timeline

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
    """Write ``sessions`` as a speedscope file of evented profiles, one per thread lane.

    Streamed in bounded memory: each lane's events go to its own temporary file as they are
    made, and the document is assembled at the end (profiles first, then the shared frame
    table, which is the only thing held in memory; JSON key order does not matter).
    Times are relative to the first call written, so sessions should come in start order.
    """
    frames = _Frames()
    lanes: dict[tuple[Any, Any, int], _Lane] = {}
    timeline = Timeline()
    base: int | None = None
    try:
        for session in sessions:
            for track in timeline.place(session):
                key = (track.pid, track.thread, track.lane)
                lane = lanes.get(key)
                if lane is None:
                    title = f"{track.thread_name} (pid {track.pid})"
                    lane = lanes[key] = _Lane(
                        title + (f" async lane {track.lane}" if track.lane else ""))
                if base is None and track.spans:
                    base = track.spans[0].start
                # Spans of a track nest and are in start order (longer first), so a stack
                # turns them into LIFO open/close events with nondecreasing times.
                stack: list[tuple[int, int, int]] = []  # (frame, start, end)
                for span in track.spans:
                    while stack and not (stack[-1][1] <= span.start and span.end <= stack[-1][2]):
                        frame, _, end = stack.pop()
                        lane.add("C", frame, end - (base or 0))
                    frame = frames.get(str(span.node.get("function_name", "?")))
                    lane.add("O", frame, span.start - (base or 0))
                    stack.append((frame, span.start, span.end))
                while stack:
                    frame, _, end = stack.pop()
                    lane.add("C", frame, end - (base or 0))
        out.write('{"$schema":%s,"name":%s,"exporter":"flowagent","activeProfileIndex":0,'
                  '"profiles":[' % (json.dumps(SCHEMA), json.dumps(name, ensure_ascii=True)))
        first = True
        for lane in lanes.values():
            if lane.count == 0:
                continue
            out.write(("" if first else ",") + lane.header())
            first = False
            lane.copy_events(out)
            out.write("]}")
        out.write('],"shared":{"frames":')
        json.dump(frames.frames, out, ensure_ascii=True, separators=(",", ":"))
        out.write("}}\n")
    finally:
        for lane in lanes.values():
            lane.close()


class _Lane:
    """One evented profile whose events wait in a temporary file."""

    def __init__(self, title: str) -> None:
        import tempfile

        self.title = title
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.count = 0
        self.start = 0
        self.end = 0

    def add(self, kind: str, frame: int, at: int) -> None:
        if self.count == 0:
            self.start = at
        self.end = at
        self.file.write('%s{"type":"%s","frame":%d,"at":%d}' % (
            "," if self.count else "", kind, frame, at))
        self.count += 1

    def header(self) -> str:
        return ('{"type":"evented","name":%s,"unit":"nanoseconds","startValue":%d,'
                '"endValue":%d,"events":[' % (json.dumps(self.title, ensure_ascii=True),
                                               self.start, self.end))

    def copy_events(self, out: TextIO) -> None:
        self.file.seek(0)
        while True:
            chunk = self.file.read(1 << 16)
            if not chunk:
                break
            out.write(chunk)

    def close(self) -> None:
        self.file.close()


def merged_speedscope(
    stacks: Iterable[str], out: TextIO, *, name: str = "flowagent merged"
) -> None:
    """Write collapsed stacks as one ``"sampled"`` profile (weights: self time in ns).

    ``stacks`` are lines as made by :func:`flowagent.reports.export.collapsed.collapsed_stacks`,
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
