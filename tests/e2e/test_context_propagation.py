"""Work started inside a recorded call runs in that call's session, nested under it, on its
own thread: threads, ThreadPoolExecutor submissions, loop.run_in_executor and
asyncio.to_thread, inside a plain flow and inside a web request; a thread that outlives the
call that started it still lands in that session (whichever ends first); work submitted
from outside any call stays its own session; tracebacks are the program's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import PROGRAMS, record, run_python, strip_summary

pytestmark = pytest.mark.e2e

FANOUT = PROGRAMS / "fanout"


def _children(g: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in g["nodes"] if n["parent_id"] == node["id"]]


def _named(g: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [n for n in g["nodes"] if n["function_name"] == name]


def test_threads_and_pools_join_the_session_that_started_them(tmp_path: Path,
                                                              backend: str) -> None:
    rec = record(FANOUT / "prog.py", tmp_path, backend=backend,
                 extra_files={"work.py": (FANOUT / "work.py").read_text()})
    plain = run_python(["prog.py"], tmp_path)
    assert rec.stdout == plain.stdout.decode() == (
        "12 22 10\ncaught unsupported operand type(s) for +: 'NoneType' and 'int'\n12\n22\n")
    assert strip_summary(rec.stderr.encode()) == plain.stderr
    sessions = rec.sessions()
    assert sorted(s["name"] for s in sessions) == [
        "<request>:GET /report", "__main__:main", "__main__:outside"]
    main = rec.tree(next(s["session_id"] for s in sessions if s["name"] == "__main__:main"))
    root = main["nodes"][0]
    fan_out = [n for n in _named(main, "__main__:fan_out") if n["parent_id"] == root["id"]]
    assert len(fan_out) == 1
    # 2 threads + 3 pool submissions, each nested under fan_out, each with its helper
    crunches = _children(main, fan_out[0])
    assert [c["function_name"] for c in crunches] == ["work:crunch"] * 5
    assert all([k["function_name"] for k in _children(main, c)] == ["work:helper"]
               for c in crunches)
    assert all(c["thread"] != root["thread"] for c in crunches)  # their own timelines
    [executor] = _named(main, "__main__:in_executor")
    assert [c["function_name"] for c in _children(main, executor)] == ["work:crunch"] * 2
    [forget] = _named(main, "__main__:fire_and_forget")
    assert [c["function_name"] for c in _children(main, forget)] == ["work:later"]
    [boom] = _named(main, "__main__:boom")
    [failed] = _children(main, boom)
    assert failed["function_name"] == "work:crunch" and failed["result_type"] == "error"
    # the request's fan-out is inside the request
    report = rec.tree(next(s["session_id"] for s in sessions
                           if s["name"] == "<request>:GET /report"))
    assert [n["function_name"] for n in report["nodes"]].count("work:crunch") == 5
    # submitted from outside any recorded call: its own session
    outside = rec.tree(next(s["session_id"] for s in sessions
                            if s["name"] == "__main__:outside"))
    assert [n["function_name"] for n in outside["nodes"]] == [
        "__main__:outside", "work:crunch", "work:helper"]
