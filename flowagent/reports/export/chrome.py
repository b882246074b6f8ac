"""Chrome Trace Event JSON export (opens in Perfetto, chrome://tracing and speedscope).

Written as a stream: the file is opened, then each session is laid out and written before the
next one is read, so memory stays bounded by the largest session, not by the run.

Decisions:

* Complete events (``"ph": "X"``), one per call, plus ``process_name`` / ``thread_name``
  metadata the first time a process or track appears.
* ``ts`` is in microseconds **relative to a base** (``base_ns``, by default the start of the
  first session written), with nanosecond digits as a fraction. Absolute epoch microseconds
  (~1.8e15) leave a double only quarter-microsecond precision, and viewers written in
  JavaScript then show slices jittering by hundreds of nanoseconds. The base is recorded in
  ``otherData`` so the wall-clock time can be recovered.
* Calls nest per track (see :mod:`flowagent.reports.export._timeline`): clamping is done on integer
  nanoseconds before converting, so ``ts``/``dur`` of a child never leave its parent.
* Lane 0 of a thread uses the real thread id as ``tid``; the extra lanes of concurrent
  asyncio tasks get ids from ``2**52`` up (still exact in JavaScript, far above any real
  thread id) and a thread name saying which thread they belong to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from flowagent.reports.export._common import split_function
from flowagent.model.contract import SessionGraph
from flowagent.reports.export._timeline import Span, Timeline, Track
from flowagent.reports.export.jsonfmt import iso_utc

_LANE_TID_BASE = 1 << 52


def _number(value: Any) -> int:
    # pid and tid must be numbers for the viewers; a missing or odd one becomes 0.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _Writer:
    def __init__(self, out: TextIO, base_ns: int | None) -> None:
        self.out = out
        self.base_ns = base_ns
        self.count = 0
        self._named_pids: set[int] = set()
        self._tids: dict[tuple[Any, Any, int], int] = {}

    def emit(self, event: dict[str, Any]) -> None:
        # ASCII output: the stream's encoding is the caller's choice, \u escapes fit any.
        text = json.dumps(event, ensure_ascii=True, separators=(",", ":"))
        self.out.write((",\n" if self.count else "") + text)
        self.count += 1

    def tid(self, track: Track, pid: int) -> int:
        key = (track.pid, track.thread, track.lane)
        tid = self._tids.get(key)
        if tid is None:
            if track.lane == 0:
                tid = _number(track.thread)
                name = track.thread_name
            else:
                tid = _LANE_TID_BASE + len(self._tids)
                name = f"{track.thread_name} [{track.thread}] async lane {track.lane}"
            self._tids[key] = tid
            self.emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                       "args": {"name": name}})
        return tid

    def process(self, pid: int, session: SessionGraph) -> None:
        if pid not in self._named_pids:
            self._named_pids.add(pid)
            run = session.get("run_id")
            name = f"pid {pid}" + (f" (run {run})" if run else "")
            self.emit({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": name}})

    def call(self, span: Span, pid: int, tid: int, session_id: Any) -> None:
        node = span.node
        assert self.base_ns is not None
        self.emit({
            "name": str(node.get("function_name", "?")),
            "cat": str(node.get("result_type") or "success"),
            "ph": "X",
            # Nanoseconds over 1000: the shortest float repr is exact to the nanosecond.
            "ts": (span.start - self.base_ns) / 1000,
            "dur": (span.end - span.start) / 1000,
            "pid": pid,
            "tid": tid,
            "args": {
                "session_id": session_id,
                "call_id": node.get("id"),
                "module": split_function(str(node.get("function_name", "")))[0],
                "input_shape": node.get("input_shape"),
                "output_shape": node.get("output_shape"),
                "exception_type": node.get("exception_type"),
            },
        })


def write_chrome_trace(
    sessions: Iterable[SessionGraph], out: TextIO, *, base_ns: int | None = None
) -> int:
    """Stream ``sessions`` to ``out`` as a Chrome trace; returns the number of events written.

    Events of one track are written in ``ts`` order, longer first on ties, per session.
    Pass ``base_ns`` (e.g. the run's start) to keep every ``ts`` non-negative even when the
    sessions do not arrive in start order.
    """
    writer = _Writer(out, base_ns)
    timeline = Timeline()
    out.write('{"traceEvents":[\n')
    for session in sessions:
        tracks = timeline.place(session)
        if writer.base_ns is None and tracks:
            writer.base_ns = min(track.spans[0].start for track in tracks)
        for track in tracks:
            pid = _number(track.pid)
            writer.process(pid, session)
            tid = writer.tid(track, pid)
            for span in track.spans:
                writer.call(span, pid, tid, session.get("session_id"))
    other: dict[str, Any] = {"exporter": "flowagent"}
    if writer.base_ns is not None:
        other["base_time_ns"] = writer.base_ns
        other["base_time"] = iso_utc(writer.base_ns)
    out.write('\n],"displayTimeUnit":"ns","otherData":' + json.dumps(other) + "}\n")
    return writer.count
