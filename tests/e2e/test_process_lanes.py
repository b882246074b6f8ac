"""One Flask request served over real HTTP on 127.0.0.1 fans out to a thread, a thread pool,
a spawn process pool, a forkserver child and a subprocess: one session, each child's work a
subtree under the call that started it, on a lane of its own (thread and process) in the
stored tree, the session list, the exports and the viewer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import PROGRAMS, record, run_python, strip_summary

pytestmark = pytest.mark.e2e

FAN = PROGRAMS / "procfan"
OUTPUT = '200 {"exit":0,"pools":12,"sub":11}\n'


def _under(g: dict[str, Any], name: str) -> list[dict[str, Any]]:
    [call] = [n for n in g["nodes"] if n["function_name"] == name]
    return [n for n in g["nodes"] if n["parent_id"] == call["id"]]


def test_request_fan_out_is_one_session_with_a_lane_per_thread_and_process(
        tmp_path: Path, backend: str) -> None:
    rec = record(FAN / "prog.py", tmp_path, backend=backend, timeout=180,
                 extra_files={"work.py": (FAN / "work.py").read_text()})
    plain = run_python(["prog.py"], tmp_path, timeout=180)
    assert rec.stdout == plain.stdout.decode() == OUTPUT
    assert strip_summary(rec.stderr.encode()).count(b"GET /fan") == 1  # werkzeug's log line
    sessions = rec.sessions()
    assert sorted(s["name"] for s in sessions) == ["<request>:GET /fan", "__main__:main"]
    [request] = [s for s in sessions if s["name"] == "<request>:GET /fan"]
    g = rec.tree(request["session_id"])
    assert request["calls"] == len(g["nodes"]) == 16  # its calls in all its processes
    assert rec.run_info()["sessions"] == 2
    ids = [n["id"] for n in g["nodes"]]
    assert len(set(ids)) == len(ids)
    known = set(ids)
    assert all(n["parent_id"] in known for n in g["nodes"][1:])
    server_pid = g["nodes"][0]["pid"]

    lanes: dict[str, tuple[Any, Any]] = {}
    for caller in ("__main__:in_thread", "__main__:in_pools", "__main__:in_child_process",
                   "__main__:in_subprocess"):
        crunches = _under(g, caller)
        assert [c["function_name"] for c in crunches] == ["work:crunch"] * (
            2 if caller == "__main__:in_pools" else 1), caller
        for c in crunches:
            assert [k["function_name"] for k in _under_node(g, c)] == ["work:helper"]
            assert c["caller"] == caller
            lanes.setdefault(caller, (c["pid"], c["thread"]))
            if caller == "__main__:in_pools":
                lanes["pool:" + str(c["pid"] == server_pid)] = (c["pid"], c["thread"])
    # thread and thread pool: the server's process, threads of their own; process pool,
    # forkserver child and subprocess: processes of their own
    assert lanes["__main__:in_thread"][0] == lanes["pool:True"][0] == server_pid
    assert lanes["__main__:in_thread"][1] != g["nodes"][0]["thread"]
    child_pids = {lanes["pool:False"][0], lanes["__main__:in_child_process"][0],
                  lanes["__main__:in_subprocess"][0]}
    assert len(child_pids) == 3 and server_pid not in child_pids
    pids = {n["pid"] for n in g["nodes"]}
    assert pids == child_pids | {server_pid}

    # exports: a process (and lanes) per pid
    chrome = json.loads(rec.cli_text("export", "--format", "chrome", "--session",
                                     request["session_id"]))
    events = chrome["traceEvents"] if isinstance(chrome, dict) else chrome
    assert {e["pid"] for e in events if e.get("ph") == "X"} == pids
    speedscope = json.loads(rec.cli_text("export", "--format", "speedscope", "--session",
                                         request["session_id"]))
    assert {p["name"].rpartition("(pid ")[2].rstrip(")") for p in speedscope["profiles"]} \
        == {str(p) for p in pids}
    otlp = json.loads(rec.cli_text("export", "--format", "otlp-json", "--session",
                                   request["session_id"]))
    resources = {a["value"]["intValue"] for rs in otlp["resourceSpans"]
                 for a in rs["resource"]["attributes"] if a["key"] == "process.pid"}
    assert resources == {str(p) for p in pids}
    traces = {s["traceId"] for rs in otlp["resourceSpans"] for ss in rs["scopeSpans"]
              for s in ss["spans"]}
    assert len(traces) == 1

    from flowagent.reports.export.mermaid import session_sequence_mermaid

    sequence = session_sequence_mermaid(g)
    assert all(f"pid {p}" in sequence for p in pids)

    # the viewer: the session page, its timeline (a track per lane) and sequence lanes
    from flowagent_viewer import create_app

    client = create_app({"DATA_DIR": str(rec.data_dir), "TESTING": True}).test_client()
    listed = client.get(f"/api/runs/{request['run_id']}/sessions").get_json()
    assert sorted(r["name"] for r in listed["items"]) == ["<request>:GET /fan",
                                                          "__main__:main"]
    assert {r["calls"] for r in listed["items"]} == {2, 16}
    timeline = client.get(f"/api/sessions/{request['session_id']}/timeline").get_json()
    labels = [t["label"] for t in timeline["tracks"]]
    assert {label.split(" · ")[0] for label in labels} == {f"pid {p}" for p in pids}
    model = client.get(f"/api/sessions/{request['session_id']}/sequence").get_json()
    assert len({lane["label"] for lane in model["lanes"]}) >= 5
    page = client.get(f"/sessions/{request['session_id']}")
    assert page.status_code == 200


def _under_node(g: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in g["nodes"] if n["parent_id"] == node["id"]]


def test_merged_graph_hangs_child_processes_under_their_caller(tmp_path: Path) -> None:
    rec = record(FAN / "prog.py", tmp_path, timeout=180,
                 extra_files={"work.py": (FAN / "work.py").read_text()})
    merged = rec.merged()
    edges = {(e["from"], e["to"]): e["frequency"] for e in merged["edges"]}
    for caller, n in (("__main__:in_thread", 1), ("__main__:in_pools", 2),
                      ("__main__:in_child_process", 1), ("__main__:in_subprocess", 1)):
        assert edges[(caller, "work:crunch")] == n, caller
    crunch = next(n for n in merged["nodes"] if n["id"] == "work:crunch")
    assert crunch["occurrences"] == 5 and crunch["roots"] == 0  # never an entry point
    stats = rec.cli_text("stats")
    flows = stats[stats.index("FLOW VARIANTS"):stats.index("ERROR CLUSTERS")]
    assert "work:crunch" not in flows  # part of the request's flow, not one of its own
