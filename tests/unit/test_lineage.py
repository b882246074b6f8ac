"""Sessions of child processes hang under the call that started them when read back
(:mod:`flowagent.store.lineage`): ids stay unique, the child's root is a child of the
parent call, grandchildren nest too, and counts roll up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowagent.store import lineage
from flowagent.store.sqlite import SQLiteStore


def _graph(session_id: str, pid: int, calls: list[tuple[int, int | None, str]]) -> dict:
    nodes = [{"id": cid, "parent_id": parent, "function_name": name, "caller": None,
              "result_type": "success", "timestamp_start": 100 * pid + cid, "pid": pid}
             for cid, parent, name in calls]
    edges = [{"from": p, "to": c, "branch": "success"} for c, p, _ in calls if p]
    return {"session_id": session_id, "nodes": nodes, "edges": edges}


def _store(tmp_path: Path, sessions: dict[str, int]) -> SQLiteStore:
    store = SQLiteStore(str(tmp_path / "flowagent.db"))
    for i, (sid, calls) in enumerate(sessions.items()):
        store.db.execute("INSERT INTO main.sessions(session_id, run_id, started_ns, calls, errors) "
                         "VALUES(?,?,?,?,?)", (sid, "r", i, calls, 1 if sid == "c-1" else 0))
    return store


def test_children_and_grandchildren_hang_under_their_calls(tmp_path: Path) -> None:
    store = _store(tmp_path, {"p-1": 3, "c-1": 2, "g-1": 1, "x-1": 1})
    lineage.add(store.db, "r", "c-1", "p-1", 2, "m:fan", 10)
    lineage.add(store.db, "r", "g-1", "c-1", 2, "w:work", 20)
    lineage.add(store.db, "r", "x-1", "p-1", 99, "m:gone", 10)  # call not in the tree
    graphs: dict[str, Any] = {
        "p-1": _graph("p-1", 10, [(1, None, "m:main"), (2, 1, "m:fan"), (3, 1, "m:end")]),
        "c-1": _graph("c-1", 20, [(1, None, "w:task"), (2, 1, "w:work")]),
        "g-1": _graph("g-1", 30, [(1, None, "w:leaf")]),
        "x-1": _graph("x-1", 40, [(1, None, "w:orphan")]),
    }
    g = lineage.graft(graphs["p-1"], store.db, lambda sid: _copy(graphs[sid]))
    ids = [n["id"] for n in g["nodes"]]
    assert len(ids) == len(set(ids)) == 7
    assert g["nodes"][0]["function_name"] == "m:main"
    by_name = {n["function_name"]: n for n in g["nodes"]}
    parent = {n["function_name"]: next(m["function_name"] for m in g["nodes"]
                                       if m["id"] == n["parent_id"])
              for n in g["nodes"] if n["parent_id"]}
    assert parent == {"m:fan": "m:main", "m:end": "m:main", "w:task": "m:fan",
                      "w:work": "w:task", "w:leaf": "w:work", "w:orphan": "m:main"}
    assert by_name["w:task"]["caller"] == "m:fan" and by_name["w:leaf"]["pid"] == 30
    assert {(e["from"], e["to"]) for e in g["edges"]} == {
        (n["parent_id"], n["id"]) for n in g["nodes"] if n["parent_id"]}
    rows = lineage.with_descendants(store.db, [{"session_id": "p-1", "calls": 3, "errors": 0}])
    assert rows == [{"session_id": "p-1", "calls": 7, "errors": 1}]
    listed = [s["session_id"] for s in store.sessions("r")]
    assert listed == ["p-1"] and store.count_sessions("r") == 1
    totals = store.session_totals("r")  # the run's summary: one session, every call
    assert (totals.sessions, totals.calls, totals.errors) == (1, 7, 1)
    assert store.parent_session("g-1") == "c-1" and store.parent_session("p-1") is None
    store.close()


def test_a_child_whose_parent_session_is_not_stored_is_listed(tmp_path: Path) -> None:
    store = _store(tmp_path, {"c-1": 2})
    lineage.add(store.db, "r", "c-1", "elsewhere-7", 3, "m:fan", 10)
    assert [s["session_id"] for s in store.sessions("r")] == ["c-1"]
    store.close()


def _copy(g: dict) -> dict:
    return {**g, "nodes": [dict(n) for n in g["nodes"]], "edges": [dict(e) for e in g["edges"]]}
