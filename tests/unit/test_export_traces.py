"""Timeline exports: Chrome trace events, speedscope, collapsed stacks.

Each output is checked by a validator written from the format's rules (not from our code):
Chrome X events nest per (pid, tid); speedscope events are balanced, LIFO and in time order
with valid frame indexes. Hypothesis throws random overlapping, skewed and cyclic sessions at
both validators.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowagent.reports.export.chrome import write_chrome_trace
from flowagent.reports.export.collapsed import collapsed_stacks, frame_name, write_collapsed
from flowagent.reports.export.speedscope import SCHEMA, merged_speedscope, write_speedscope

T0 = 1_763_822_100_000_000_000
HOSTILE = '<script>alert("x")</script> a;b\nc "q" \\ {x|y} ünï 漢'


def call(call_id: int, parent: int | None, name: str, start: int, end: int | None,
         thread: int = 1, pid: int = 4242, **extra: Any) -> dict:
    return {
        "id": call_id, "parent_id": parent, "function_name": name, "caller": None,
        "input_shape": {"x": "int"}, "output_shape": "str", "result_type": "success",
        "exception_type": None, "timestamp_start": T0 + start,
        "timestamp_end": None if end is None else T0 + end,
        "thread": thread, "thread_name": f"Thread-{thread}", "pid": pid, **extra,
    }


def session(session_id: str, *calls: dict) -> dict:
    return {"session_id": session_id, "run_id": "run-1", "name": session_id,
            "result_type": "success", "complete": True,
            "nodes": sorted(calls, key=lambda c: c["timestamp_start"]),
            "edges": [{"from": c["parent_id"], "to": c["id"], "branch": c["result_type"]}
                      for c in calls if c["parent_id"] is not None]}


def tree_session() -> dict:
    # a(0..1000) → b(100..400) → c(150..250); a → d(500..900)
    return session(
        "s1",
        call(1, None, "m:a", 0, 1000),
        call(2, 1, "m:b", 100, 400),
        call(3, 2, "m:c", 150, 250),
        call(4, 1, "m:d", 500, 900),
    )


# ---------------------------------------------------------------------------------------------
# Validators


def chrome_events(sessions: list[dict], **kwargs: Any) -> tuple[int, dict]:
    out = io.StringIO()
    count = write_chrome_trace(sessions, out, **kwargs)
    return count, json.loads(out.getvalue())


def contains(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def check_chrome(doc: dict, count: int) -> list[dict]:
    """Validate a Chrome trace; returns its X events."""
    assert doc["displayTimeUnit"] == "ns"
    events = doc["traceEvents"]
    assert len(events) == count
    complete = [e for e in events if e["ph"] == "X"]
    meta = [e for e in events if e["ph"] == "M"]
    assert {e["ph"] for e in events} <= {"X", "M"}
    for e in complete:
        assert {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"} <= set(e)
        assert isinstance(e["name"], str) and isinstance(e["pid"], int)
        assert isinstance(e["tid"], int) and e["dur"] >= 0
        assert abs(e["tid"]) < 2**53  # exact in JavaScript
        assert set(e["args"]) >= {"session_id", "input_shape", "output_shape", "exception_type"}
    named_threads = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
    named_pids = {e["pid"] for e in meta if e["name"] == "process_name"}
    assert all(e["args"]["name"] for e in meta)
    by_track: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for e in complete:
        assert (e["pid"], e["tid"]) in named_threads and e["pid"] in named_pids
        # Back to integer ns as Perfetto does (llround(ts * 1000)).
        start = round(e["ts"] * 1000)
        end = start + round(e["dur"] * 1000)
        by_track.setdefault((e["pid"], e["tid"]), []).append((start, end))
    for intervals in by_track.values():
        stack: list[tuple[int, int]] = []
        for start, end in sorted(intervals, key=lambda i: (i[0], -(i[1] - i[0]))):
            # Close the slices that ended by this start and do not contain it.
            while stack and stack[-1][1] <= start and not contains(stack[-1], (start, end)):
                stack.pop()
            if stack:  # must lie inside the innermost open slice: no partial overlap
                assert contains(stack[-1], (start, end)), (stack[-1], (start, end))
            stack.append((start, end))
    return complete


def speedscope_doc(sessions: list[dict]) -> dict:
    out = io.StringIO()
    write_speedscope(sessions, out, name="test run")
    return json.loads(out.getvalue())


def check_speedscope(doc: dict) -> list[list[tuple[str, int, int]]]:
    """Validate a speedscope file; returns each profile's (frame name, open, close) calls."""
    assert doc["$schema"] == SCHEMA
    frames = doc["shared"]["frames"]
    assert all(isinstance(f["name"], str) for f in frames)
    calls = []
    for profile in doc["profiles"]:
        assert profile["type"] == "evented" and profile["unit"] == "nanoseconds"
        events = profile["events"]
        stack: list[tuple[int, int]] = []
        last = profile["startValue"]
        found = []
        for event in events:
            assert event["type"] in ("O", "C")
            assert 0 <= event["frame"] < len(frames)
            assert event["at"] >= last, "at must not decrease"
            last = event["at"]
            if event["type"] == "O":
                stack.append((event["frame"], event["at"]))
            else:
                frame, opened = stack.pop()  # LIFO: closes the innermost open frame
                assert frame == event["frame"]
                found.append((frames[frame]["name"], opened, event["at"]))
        assert not stack, "every open has a close"
        assert last <= profile["endValue"]
        calls.append(found)
    return calls


# ---------------------------------------------------------------------------------------------
# Chrome


def test_chrome_tree() -> None:
    count, doc = chrome_events([tree_session()])
    xs = check_chrome(doc, count)
    assert [(e["name"], e["ts"], e["dur"]) for e in xs] == [
        ("m:a", 0.0, 1.0), ("m:b", 0.1, 0.3), ("m:c", 0.15, 0.1), ("m:d", 0.5, 0.4)]
    assert {e["tid"] for e in xs} == {1} and {e["pid"] for e in xs} == {4242}
    assert xs[0]["args"]["session_id"] == "s1"
    assert doc["otherData"]["base_time_ns"] == T0
    meta = {e["name"]: e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert meta == {"process_name": "pid 4242 (run run-1)", "thread_name": "Thread-1"}


def test_chrome_clamps_children_into_parents() -> None:
    # Wall-clock skew: b starts before a and c ends after a; sub-µs times everywhere.
    s = session("skew", call(1, None, "a", 1001, 2999), call(2, 1, "b", 999, 1500),
                call(3, 1, "c", 2000, 3001))
    count, doc = chrome_events([s], base_ns=T0)
    xs = {e["name"]: (round(e["ts"] * 1000), round(e["dur"] * 1000))
          for e in check_chrome(doc, count)}
    assert xs == {"a": (1001, 1998), "b": (1001, 499), "c": (2000, 999)}


def test_chrome_concurrent_calls_get_their_own_lane() -> None:
    # asyncio.gather: b and c overlap on one thread; a second session overlaps the first.
    first = session("s1", call(1, None, "a", 0, 1000), call(2, 1, "b", 100, 600),
                    call(3, 1, "c", 200, 700), call(4, 3, "c2", 300, 400))
    second = session("s2", call(5, None, "x", 500, 1500))
    count, doc = chrome_events([first, second])
    xs = check_chrome(doc, count)
    tid = {e["name"]: e["tid"] for e in xs}
    assert tid["a"] == tid["b"] == 1
    assert tid["c"] == tid["c2"] != 1
    assert tid["x"] not in (1, tid["c"])
    lanes = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"]
    assert lanes[0] == "Thread-1" and all("async lane" in name for name in lanes[1:])


def test_chrome_threads_processes_orphans_and_unfinished_calls() -> None:
    s = session(
        "mixed",
        call(1, None, "main", 0, 1000),
        call(2, 1, "worker", 100, 5000, thread=2),  # outlives its parent on another thread
        call(3, 99, "orphan", 2000, 2100),  # parent lost
        call(4, 1, "open", 300, None),  # never finished
        call(5, None, "child_process", 0, 10, pid=4243),
    )
    count, doc = chrome_events([s])
    xs = check_chrome(doc, count)
    assert {e["name"]: (e["pid"], e["tid"]) for e in xs} == {
        "main": (4242, 1), "worker": (4242, 2), "orphan": (4242, 1), "open": (4242, 1),
        "child_process": (4243, 1)}
    assert {e["name"]: e["dur"] for e in xs}["worker"] == 4.9  # not clamped across threads


def test_chrome_hostile_names_and_deep_recursion() -> None:
    depth = 5000  # far beyond Python's recursion limit: the walk must not recurse
    calls = [call(i, i - 1 if i else None, HOSTILE, i, 2 * depth - i) for i in range(depth)]
    count, doc = chrome_events([session(HOSTILE, *calls)])
    xs = check_chrome(doc, count)
    assert len(xs) == depth and {e["name"] for e in xs} == {HOSTILE}
    assert xs[0]["args"]["session_id"] == HOSTILE


def test_chrome_streams_session_by_session() -> None:
    out = io.StringIO()
    seen_before_second: list[str] = []

    def sessions() -> Iterator[dict]:
        yield session("s1", call(1, None, "first_session_call", 0, 10))
        seen_before_second.append(out.getvalue())
        yield session("s2", call(2, None, "second_session_call", 20, 30))

    count = write_chrome_trace(sessions(), out)
    assert "first_session_call" in seen_before_second[0]
    assert out.getvalue().startswith('{"traceEvents":[')
    assert out.getvalue().rstrip().endswith("}")
    check_chrome(json.loads(out.getvalue()), count)


def test_chrome_empty_stream_is_valid() -> None:
    count, doc = chrome_events([])
    assert count == 0 and doc["traceEvents"] == []


# ---------------------------------------------------------------------------------------------
# speedscope


def test_speedscope_evented_tree() -> None:
    doc = speedscope_doc([tree_session()])
    assert doc["name"] == "test run"
    [calls] = check_speedscope(doc)
    assert sorted(calls, key=lambda c: c[1]) == [
        ("m:a", 0, 1000), ("m:b", 100, 400), ("m:c", 150, 250), ("m:d", 500, 900)]
    assert doc["shared"]["frames"][0] == {"name": "m:a", "file": "m"}
    profile = doc["profiles"][0]
    assert (profile["startValue"], profile["endValue"]) == (0, 1000)


def test_speedscope_profiles_per_thread_and_lane_share_one_clock() -> None:
    first = session("s1", call(1, None, "a", 0, 1000), call(2, 1, "b", 100, 600),
                    call(3, 1, "c", 200, 700), call(4, None, "t2", 50, 60, thread=2))
    later = session("s2", call(5, None, "a", 2000, 2500))
    doc = speedscope_doc([first, later])
    calls = check_speedscope(doc)
    names = [p["name"] for p in doc["profiles"]]
    assert names == ["Thread-1 (pid 4242)", "Thread-1 (pid 4242) async lane 1",
                     "Thread-2 (pid 4242)"]
    assert calls[0] == [("b", 100, 600), ("a", 0, 1000), ("a", 2000, 2500)]
    assert calls[1] == [("c", 200, 700)]
    assert calls[2] == [("t2", 50, 60)]
    assert [f["name"] for f in doc["shared"]["frames"]].count("a") == 1  # shared frames


def test_speedscope_hostile_names_round_trip() -> None:
    doc = speedscope_doc([session("h", call(1, None, HOSTILE, 0, 10))])
    [[(name, _, _)]] = check_speedscope(doc)
    assert name == HOSTILE


def test_speedscope_sampled_from_collapsed_stacks() -> None:
    out = io.StringIO()
    merged_speedscope(collapsed_stacks([tree_session(), tree_session()]), out)
    doc = json.loads(out.getvalue())
    [profile] = doc["profiles"]
    frames = [f["name"] for f in doc["shared"]["frames"]]
    assert profile["type"] == "sampled" and profile["unit"] == "nanoseconds"
    assert len(profile["samples"]) == len(profile["weights"])
    assert all(0 <= i < len(frames) for sample in profile["samples"] for i in sample)
    stacks = {";".join(frames[i] for i in sample): weight
              for sample, weight in zip(profile["samples"], profile["weights"])}
    assert stacks == {"m:a": 600, "m:a;m:b": 400, "m:a;m:b;m:c": 200, "m:a;m:d": 800}
    assert profile["endValue"] == sum(profile["weights"]) == 2000  # two sessions of 1000 ns


# ---------------------------------------------------------------------------------------------
# Collapsed stacks


def test_collapsed_exact_lines_and_self_times() -> None:
    assert list(collapsed_stacks([tree_session()])) == [
        "m:a 300",  # 1000 - (300 + 400)
        "m:a;m:b 200",  # 300 - 100
        "m:a;m:b;m:c 100",
        "m:a;m:d 400",
    ]


def test_collapsed_aggregates_sessions_and_never_goes_negative() -> None:
    concurrent = session("gather", call(1, None, "m:a", 0, 100), call(2, 1, "m:b", 0, 90),
                         call(3, 1, "m:b", 10, 100))  # children sum 180 > parent 100
    lines = list(collapsed_stacks([tree_session(), concurrent, tree_session()]))
    assert lines == ["m:a 600", "m:a;m:b 580", "m:a;m:b;m:c 200", "m:a;m:d 800"]


def test_collapsed_sanitises_frame_names_and_recursion() -> None:
    s = session("r", call(1, None, HOSTILE, 0, 30), call(2, 1, HOSTILE, 10, 20))
    lines = list(collapsed_stacks([s]))
    frame = frame_name(HOSTILE)
    assert ";" not in frame and "\n" not in frame
    assert frame.startswith('<script>alert("x")</script> a:b c')
    assert lines == [f"{frame} 20", f"{frame};{frame} 10"]
    out = io.StringIO()
    assert write_collapsed([s], out) == 2
    assert out.getvalue().splitlines() == lines
    for line in lines:  # the format: frames, one space, an integer
        stack, _, weight = line.rpartition(" ")
        assert weight.isdigit() and len(stack.split(";")) in (1, 2)


# ---------------------------------------------------------------------------------------------
# Random sessions: the validators must hold whatever the timing


@st.composite
def random_sessions(draw: st.DrawFn) -> list[dict]:
    sessions = []
    next_id = 0
    for number in range(draw(st.integers(1, 4))):
        calls: list[dict] = []
        for _ in range(draw(st.integers(1, 25))):
            start = draw(st.integers(0, 5000))
            end = draw(st.one_of(st.none(), st.integers(0, 6000)))  # may end before start
            parent = draw(st.one_of(st.none(), st.sampled_from([c["id"] for c in calls] or [None]),
                                    st.just(-1)))  # -1: a lost parent
            calls.append(call(next_id, parent, draw(st.sampled_from(["a", "b", HOSTILE])), start,
                              end, thread=draw(st.sampled_from([1, 2])),
                              pid=draw(st.sampled_from([10, 11]))))
            next_id += 1
        if draw(st.booleans()) and len(calls) > 1:  # a parent cycle in corrupt data
            calls[0]["parent_id"] = calls[-1]["id"]
        sessions.append(session(f"s{number}", *calls))
    return sessions


@settings(max_examples=150, deadline=None)
@given(random_sessions())
def test_random_sessions_stay_valid(sessions: list[dict]) -> None:
    total_calls = sum(len(s["nodes"]) for s in sessions)
    count, doc = chrome_events(sessions)
    xs = check_chrome(doc, count)
    assert len(xs) == total_calls
    calls = check_speedscope(speedscope_doc(sessions))
    assert sum(len(c) for c in calls) == total_calls
    assert Counter(name for c in calls for name, _, _ in c) == Counter(
        n["function_name"] for s in sessions for n in s["nodes"])
    lines = list(collapsed_stacks(sessions))
    assert all(int(line.rpartition(" ")[2]) >= 0 for line in lines)


def _synthetic_sessions(n: int):
    """n sessions of 50 nested-and-sibling calls each, made one at a time."""
    t = 1_700_000_000_000_000_000
    for s in range(n):
        nodes = [{"id": 1, "parent_id": None, "function_name": "app:root", "timestamp_start": t,
                  "timestamp_end": t + 100_000, "thread": 1, "thread_name": "MainThread",
                  "pid": 7, "result_type": "success"}]
        for i in range(2, 51):
            nodes.append({"id": i, "parent_id": 1, "function_name": f"app:f{i % 7}",
                          "timestamp_start": t + i * 1000, "timestamp_end": t + i * 1000 + 500,
                          "thread": 1, "thread_name": "MainThread", "pid": 7,
                          "result_type": "success"})
        yield {"session_id": f"s{s}", "nodes": nodes, "edges": []}
        t += 200_000


def test_trace_exports_stream_in_bounded_memory():
    import tracemalloc

    from flowagent.reports.export.chrome import write_chrome_trace
    from flowagent.reports.export.speedscope import write_speedscope

    def peak(write, n):
        tracemalloc.start()
        write(_synthetic_sessions(n), _Sink())
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    # 12 times the sessions: a writer that held them all would peak about 12 times higher.
    for write in (write_chrome_trace, write_speedscope):
        small, large = peak(write, 50), peak(write, 600)
        assert large < 3 * small, (write.__name__, small, large)


class _Sink:
    """A text file that forgets what it is given (the output is not what is measured)."""

    def write(self, text: str) -> int:
        return len(text)
