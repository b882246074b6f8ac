"""The store interface, exercised through ``open_store(store_url)`` only: every test here runs
unchanged against each store implementation (see conftest.py)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from flowagent.errors import StoreError
from flowagent.store import chunks as C
from flowagent.store.api import (
    FAILED, PRUNED, RECENT, AggregateRows, ClusterStats, EdgeStats, FunctionDef,
    NodeStats, PathCount, ProcessProgress, ProcessSample, RunEnd, RunTotals, SessionEnd,
    SessionFilter, SessionRow, ShapeCount, Store, VariantStats, kind_of, open_store, sqlite_path)

RUN = "run-1"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def _fn(store: Store, fid: int, name: str, params: tuple[str, ...] = ("x",)) -> None:
    module, _, qualname = name.partition(":")
    store.add_function(RUN, FunctionDef(fid, name, module, qualname, f"{module}.py", fid * 10,
                                        "function", params))


def _session(store: Store, n: int, *, result: str = "success", root_fid: int = 1,
             fids: tuple[int, ...] = (1, 2), kept: int = RECENT, started: int | None = None,
             raised: tuple[tuple[int, int, int], ...] = (), variant: str | None = "v1") -> int:
    started = 1_000 * n if started is None else started
    rowid = store.open_session(f"p1-{n}", RUN, root_fid, 42, "p1", "1", started)
    store.finish_session(rowid, SessionEnd(
        name="app:main", root_fid=root_fid, thread="MainThread", result=result,
        complete=result != "incomplete", started_ns=started, ended_ns=started + 10 * n,
        calls=len(fids), errors=1 if result == "error" else 0, variant=variant, tree_kept=kept,
        fids=fids, raised=raised))
    return rowid


def test_store_satisfies_the_interface(store: Store, store_url: str) -> None:
    assert isinstance(store, Store)
    missing = [name for name, _ in inspect.getmembers(Store, inspect.isfunction)
               if not name.startswith("_") and not callable(getattr(store, name, None))]
    assert missing == []
    differ = {}
    for name, fn in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        want = list(inspect.signature(fn).parameters)[1:]
        have = list(inspect.signature(getattr(store, name)).parameters)
        if want != have:  # keyword callers must work the same on every store
            differ[name] = (want, have)
    assert differ == {}
    assert store.readonly is False
    assert isinstance(store.capabilities, dict) and "shared" in store.capabilities


def test_urls() -> None:
    assert kind_of("/a/b.db") == kind_of("sqlite:////a/b.db") == kind_of("rel.db") == "sqlite"
    assert kind_of("postgresql://u@h/db") == kind_of("postgres://h/db") == "postgresql"
    assert sqlite_path("sqlite:////a/b.db") == "/a/b.db"
    assert sqlite_path("sqlite:///rel/b.db") == "rel/b.db"
    with pytest.raises(StoreError, match="unknown store"):
        kind_of("mysql://h/db")


def test_run_lifecycle(store: Store, store_url: str) -> None:
    assert store.create_run(RUN, 100, "checkout", "web-1")
    assert not store.create_run(RUN, 200, "checkout", "web-1")
    assert store.create_run("run-2", 300, "billing", "web-2")
    assert store.latest_run() == "run-2"
    with store.transaction():
        store.write_run_totals(RUN, RunTotals(
            sessions=3, calls=30, errors=1, incomplete_sessions=1, produced_events=31,
            dropped_events=1, dropped_batches=1, corrupt_frames=0, duplicate_frames=2,
            agent_errors=0, processes=2, sampled_out=4, hook_errors=0, hook_error=None,
            pruned_sessions=5))
        store.write_run_totals(RUN, RunTotals(
            sessions=3, calls=30, errors=1, incomplete_sessions=1, produced_events=31,
            dropped_events=1, dropped_batches=1, corrupt_frames=0, duplicate_frames=2,
            agent_errors=0, processes=2, sampled_out=4, hook_errors=0, hook_error=None,
            pruned_sessions=2))
        store.write_otlp_totals(RUN, 3, 30, 0)
    store.write_hook_errors(RUN, 1, "boom")
    with store.transaction():  # the sidecar's last write carries the launcher's part
        store.finish_run(RUN, RunEnd(("app.py", "--flag"), "/work", "wrap", 900, 0, "pending"))
    assert store.run(RUN)["status"] == "pending"  # type: ignore[index]
    store.finish_run(RUN, RunEnd(("app.py", "--flag"), "/work", "wrap", 900, 0, "finished"))
    run = store.run(RUN)
    assert run is not None
    assert (run["sessions"], run["calls"], run["pruned_sessions"], run["duplicate_frames"]) == (
        3, 30, 7, 2)
    assert (run["hook_errors"], run["hook_error"], run["otlp_spans"]) == (1, "boom", 30)
    assert (run["status"], run["ended_ns"], run["exit_code"], run["backend"]) == (
        "finished", 900, 0, "wrap")
    assert (run["service"], run["host"]) == ("checkout", "web-1")
    store.set_run_status("run-2", "sidecar-failed")
    assert store.run("run-2")["status"] == "sidecar-failed"  # type: ignore[index]
    assert [r["run_id"] for r in store.runs()] == ["run-2", RUN]
    assert [r["run_id"] for r in store.runs(service="checkout")] == [RUN]
    assert [r["run_id"] for r in store.runs(host="web-2")] == ["run-2"]
    assert [r["run_id"] for r in store.runs(limit=1)] == ["run-2"]
    assert store.run("nope") is None
    fleet = {(f.service, f.host): f.runs for f in store.fleet()}
    assert fleet == {("checkout", "web-1"): 1, ("billing", "web-2"): 1}


def test_pending_resolution(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    store.set_run_status(RUN, "pending")
    with store.transaction():
        store.resolve_pending(RUN, still_running=True)
    assert store.run(RUN)["status"] == "pending"  # type: ignore[index]
    with store.transaction():
        store.resolve_pending(RUN, still_running=False)
    assert store.run(RUN)["status"] == "finished"  # type: ignore[index]


def test_processes_resume_where_the_store_says(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    with store.transaction():
        store.add_process(RUN, "p1", 42, 1, {"argv": ["app.py"]}, 5)
    assert store.process_state(RUN, "p1").last_seq == 0  # type: ignore[union-attr]
    assert store.process_state(RUN, "p2") is None
    with store.transaction():
        store.save_process(RUN, "p1", ProcessProgress(
            last_seq=7, ring_tail=4096, produced_events=100, dropped_events=3,
            dropped_batches=1, stored_events=97, duplicate_frames=2, corrupt_frames=1,
            agent_errors=0, closed=1, info={"argv": ["app.py"], "fids": {"1": 1}}))
    state = store.process_state(RUN, "p1")
    assert state is not None
    assert (state.last_seq, state.ring_tail, state.stored_events, state.duplicate_frames) == (
        7, 4096, 97, 2)
    assert state.info == {"argv": ["app.py"], "fids": {"1": 1}}
    (counters,) = store.process_counters(RUN)
    assert (counters.pk, counters.produced_events, counters.dropped_events,
            counters.corrupt_frames, counters.stored_events) == ("p1", 100, 3, 1, 97)
    (proc,) = store.processes(RUN)
    assert (proc["pid"], proc["ppid"], proc["closed"]) == (42, 1, 1)
    store.add_samples([ProcessSample(RUN, 42, 20, 0.5, 1000),
                       ProcessSample(RUN, 42, 10, 0.25, 2000)])
    assert [(s.ts_ns, s.cpu_s, s.rss_bytes) for s in store.samples(RUN, 42)] == [
        (10, 0.25, 2000), (20, 0.5, 1000)]
    assert store.aggregate_version(RUN).samples == 2


def test_savepoint_undoes_only_its_part(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    with store.transaction():
        _fn(store, 1, "app:main")
        with pytest.raises(RuntimeError):
            with store.savepoint():
                _fn(store, 2, "app:half")
                raise RuntimeError("bad frame")
        _fn(store, 3, "app:after")
    assert sorted(f["name"] for f in store.functions(RUN).values()) == ["app:after", "app:main"]


def test_functions_and_shapes(store: Store) -> None:
    _fn(store, 1, "app:main", ("a", "b"))
    fns = store.functions(RUN)
    assert fns[1]["name"] == "app:main" and fns[1]["params"] == ["a", "b"]
    assert (fns[1]["module"], fns[1]["qualname"], fns[1]["line"]) == ("app", "main", 10)
    sid = store.shape_id('"int"')
    assert store.shape_id('"int"') == sid and store.shape_id('"str"') != sid
    assert store.shape_text(sid) == '"int"'
    assert store.shape_text(None) is None and store.shape_text(0) is None


def test_sessions_write_and_read(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    _fn(store, 1, "app:main")
    _fn(store, 2, "app:helper")
    _fn(store, 3, "app:rare")
    exc = store.shape_id("ValueError")
    _session(store, 1)
    _session(store, 2, result="error", kept=FAILED, raised=((2, exc, 1),), variant="v2")
    _session(store, 3, fids=(1, 3))
    rowid = store.open_session("p1-4", RUN, 1, 42, "p1", "1", 4_000)  # still open
    assert store.open_session("p1-4", RUN, 1, 42, "p1", "1", 4_000) == rowid  # replayed
    sessions = store.sessions(RUN)
    assert [s["session_id"] for s in sessions] == ["p1-1", "p1-2", "p1-3", "p1-4"]
    assert set(sessions[0]) >= {"session_id", "run_id", "name", "result", "complete",
                                "duration_ns", "calls", "errors", "variant", "tree_kept"}
    assert sessions[0]["complete"] is True and sessions[0]["duration_ns"] == 10
    assert [s["session_id"] for s in store.sessions(RUN, result="error")] == ["p1-2"]
    assert [s["session_id"] for s in store.sessions(RUN, search="rare")] == ["p1-3"]
    assert [s["session_id"] for s in store.sessions(RUN, order="duration", limit=2)] == [
        "p1-3", "p1-2"]
    assert [s["session_id"] for s in store.sessions(RUN, min_duration_ns=20)] == [
        "p1-2", "p1-3"]
    assert store.count_sessions(RUN) == 4 and store.count_sessions() == 4
    assert store.count_matching(SessionFilter(RUN)) == (4, False)
    assert store.count_matching(SessionFilter(RUN), cap=2) == (2, True)
    assert store.count_matching(SessionFilter(RUN, result="error")) == (1, False)
    assert store.session("p1-2")["result"] == "error"  # type: ignore[index]
    assert store.session("nope") is None
    assert store.session_starts(["p1-1", "p1-3", "nope"]) == {"p1-1": 1_000, "p1-3": 3_000}
    t = store.session_totals(RUN)
    assert (t.sessions, t.calls, t.errors, t.open_sessions, t.incomplete_sessions) == (
        4, 6, 1, 1, 0)
    assert store.session_results(RUN) == {"success": 2, "error": 1, "open": 1}
    assert sorted((v.variant, v.result, v.sessions) for v in store.variant_results(RUN)) == [
        ("v1", "success", 2), ("v2", "error", 1)]
    assert [(e.function_name, e.exception_type, e.count)
            for e in store.exception_types(RUN)] == [("app:helper", "ValueError", 1)]
    assert [s["session_id"] for s in store.function_sessions(RUN, "app:rare")] == ["p1-3"]
    assert [s["session_id"] for s in store.function_sessions(RUN, "app:helper")] == [
        "p1-2", "p1-1"]
    assert store.function_sessions(RUN, "app:none") == []
    assert store.root_sessions(RUN, "app:main", 2) == ["p1-4", "p1-3"]
    assert store.count_kept(RUN, FAILED) == 1
    assert store.count_kept(RUN, RECENT) == 3  # the open one counts as recent until it ends
    (open_,) = store.open_sessions(RUN, "p1")
    assert (open_.rowid, open_.session_id, open_.started_ns) == (rowid, "p1-4", 4_000)


def test_sessions_stored_whole(store: Store) -> None:
    """One-call sessions of a frame go in as whole rows, ids counted from the first free one
    (a shared store's spool captures them like any other row)."""
    store.create_run(RUN, 1, None, "h")
    _fn(store, 1, "app:main")
    _fn(store, 2, "app:helper")
    exc = store.shape_id("KeyError")
    first = _session(store, 1)
    with store.transaction():
        rowid = store.next_session_rowid()
        assert rowid > first
        rows = [SessionRow(rowid + i, f"p1-{10 + i}", RUN, 42, "p1", SessionEnd(
            name="app:helper", root_fid=2, thread="worker", result=result,
            complete=True, started_ns=10_000 + i, ended_ns=10_050 + 101 * i, calls=1,
            errors=int(result == "error"), variant="v9", tree_kept=RECENT, fids=(2,),
            raised=((2, exc, 1),) if result == "error" else ()))
            for i, result in enumerate(("success", "error", "success"))]
        store.insert_sessions(rows)
        data = C.encode([(10, 0, 10, 2, 0, 0, 0, 0, 0, 10, 60, 1, 0)], (0, 0))
        chunk = store.add_chunk(RUN, "p1", C.STORE, 1, data)
        store.link_chunks([(rowid, chunk, 1)])
        assert store.next_session_rowid() == rowid + 3
    got = store.session("p1-11")
    assert got is not None
    assert (got["name"], got["thread"], got["result"], got["complete"], got["duration_ns"],
            got["errors"], got["variant"]) == ("app:helper", "worker", "error", True, 150, 1,
                                               "v9")
    assert store.count_sessions(RUN) == 4
    assert [s["session_id"] for s in store.function_sessions(RUN, "app:helper")][:3] == [
        "p1-12", "p1-11", "p1-10"]
    assert [(e.function_name, e.exception_type, e.count)
            for e in store.exception_types(RUN)] == [("app:helper", "KeyError", 1)]
    assert list(store.session_chunk_data(rowid)) == [data]
    t = store.session_totals(RUN)
    assert (t.sessions, t.calls, t.errors) == (4, 5, 1)


def test_calls_round_trip(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    _fn(store, 1, "app:main", ("n",))
    _fn(store, 2, "app:helper", ())
    store.open_session("tool-1", RUN, 1, 42, "p1", "1", 1_000)
    out = store.shape_id('"int"')
    inp = store.shape_id('["int"]')
    rows = [(1, 0, 1, 0, inp, out, 0, 0, 1_000, 2_000, 1, 0),
            (2, 1, 2, 1, 0, out, 0, 0, 1_100, 1_900, 1, 0)]
    with store.transaction():
        store.add_calls("tool-1", rows)
    calls = store.session_calls("tool-1")
    assert [(c["call_id"], c["parent_id"], c["fid"], c["t0"]) for c in calls] == [
        (1, 0, 1, 1_000), (2, 1, 2, 1_100)]
    g = store.session_graph("tool-1")
    assert g is not None
    assert [n["function_name"] for n in g["nodes"]] == ["app:main", "app:helper"]
    assert g["nodes"][0]["input_shape"] == {"n": "int"}
    assert g["edges"] == [{"from": 1, "to": 2, "branch": "success"}]
    assert store.stored_calls(RUN) == {"calls": 2, "placeholders": 0}
    with pytest.raises(StoreError):
        store.add_calls("nope", rows)


def test_raw_chunks_and_pruning(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    _fn(store, 1, "app:main")
    a = _session(store, 1)
    b = _session(store, 2)
    data = C.encode([(1, 0, 1, 1, 0, 0, 0, 0, 0, 10, 20, 1, 0),
                     (1, 0, 2, 1, 0, 0, 0, 0, 0, 30, 40, 1, 0)], (0, 0))
    with store.transaction():
        chunk = store.add_chunk(RUN, "p1", C.STORE, 2, data)
        store.link_chunks([(a, chunk, 1), (b, chunk, 1)])
    assert list(store.session_chunk_data(a)) == [data]
    assert store.stored_calls(RUN) == {"calls": 2, "placeholders": 0}
    assert store.kept_beyond(RUN, RECENT, 1) == [a]
    store.prune_trees([a])
    assert list(store.session_chunk_data(a)) == []
    assert store.session("p1-1")["tree_kept"] == PRUNED  # type: ignore[index]
    assert store.stored_calls(RUN) == {"calls": 1, "placeholders": 0}
    assert store.count_sessions(RUN) == 2  # rows stay


def _aggregates() -> AggregateRows:
    return AggregateRows(
        nodes=(NodeStats(1, 10, 1, 2, 1_000, 600, 50, 300, 4, 0, {100: 3, 200: 7}),
               NodeStats(2, 5, 0, 0, 400, 400, 60, 100, 0, 7, {80: 5})),
        edges=(EdgeStats(1, 2, 0, 5, 400),),
        shapes=(ShapeCount(1, "in", 1, 10, "p1-1"), ShapeCount(2, "out", 2, 5, "p1-2")),
        paths=(PathCount('["app:main", "app:helper"]', 5), PathCount('["app:main"]', 9)),
        variants=(VariantStats("v1", 1, 8, 1, {1_000: 8}, 100, ("p1-1", "p1-2")),
                  VariantStats("v2", 1, 2, 0, {2_000: 2}, 50, ("p1-3",))),
        clusters=(ClusterStats(3, 2, '["app:main", "app:helper"]', 0, 1, 10, 20, ("p1-2",)),))


def test_aggregates_round_trip(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    _fn(store, 1, "app:main")
    _fn(store, 2, "app:helper")
    with store.transaction():
        store.write_aggregates(RUN, _aggregates())
    loaded = store.load_aggregates(RUN)
    want = _aggregates()
    assert sorted(loaded.nodes, key=lambda n: n.fid) == list(want.nodes)
    assert list(loaded.edges) == list(want.edges)
    assert sorted((s.fid, s.io, s.shape_sid, s.count, s.first_session) for s in loaded.shapes) \
        == [(1, "in", 1, 10, "p1-1"), (2, "out", 2, 5, "p1-2")]
    assert sorted(loaded.paths, key=lambda p: p.path) == sorted(want.paths, key=lambda p: p.path)
    assert sorted(loaded.variants, key=lambda v: v.variant) == list(want.variants)
    assert list(loaded.clusters) == list(want.clusters)
    # an upsert replaces the row of the same key
    with store.transaction():
        store.write_aggregates(RUN, AggregateRows(
            nodes=(NodeStats(1, 11, 1, 2, 1_100, 600, 50, 300, 5, 0, {100: 4, 200: 7}),)))
    assert {n.fid: n.calls for n in store.node_stats(RUN)} == {1: 11, 2: 5}
    assert [v.variant for v in store.variant_stats(RUN)] == ["v1", "v2"]  # most frequent first
    assert [p.count for p in store.path_counts(RUN)] == [9, 5]
    assert [p.count for p in store.path_counts(RUN, limit=1)] == [9]
    assert [s.fid for s in store.shape_counts(RUN, "out")] == [2]
    assert [(r.name, r.sessions) for r in store.session_roots(RUN)] == [("app:main", 5)]
    v = store.aggregate_version(RUN)
    assert (v.nodes, v.calls, v.errors) == (2, 16, 1)
    agg = store.aggregates(RUN)
    assert agg["run_id"] == RUN and len(agg["nodes"]) == 2 and len(agg["edges"]) == 1


def test_limits_delete_whole_runs(store: Store) -> None:
    for i, run_id in enumerate(("old", "mid", "new")):
        store.create_run(run_id, i, None, "h")
        store.finish_run(run_id, RunEnd(("app.py",), "/", "wrap", 10 + i, 0, "finished"))
    store.create_run("live", 5, None, "h")  # still recording: never pruned
    assert store.prunable_runs("new") == ["old", "mid"]
    assert store.stored_bytes() > 0
    store.delete_run("old")
    assert store.run("old") is None
    assert [r["run_id"] for r in store.runs()] == ["live", "new", "mid"]


def test_readonly_store(store_url: str) -> None:
    writer = open_store(store_url)
    writer.create_run(RUN, 1, "svc", "h")
    writer.close()
    reader = open_store(store_url, readonly=True)
    try:
        assert reader.readonly is True
        assert reader.run(RUN)["service"] == "svc"  # type: ignore[index]
        with pytest.raises(Exception):
            reader.create_run("other", 2, None, "h")
    finally:
        reader.close()


def test_reading_a_missing_store_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="no flowagent data"):
        open_store(str(tmp_path / "none" / "flowagent.db"), readonly=True)


def test_examples_and_edges_keep_their_types(store: Store) -> None:
    store.create_run(RUN, 1, None, "h")
    with store.transaction():
        store.write_aggregates(RUN, _aggregates())
    (c,) = store.cluster_stats(RUN)
    assert c.examples == ("p1-2",) and isinstance(c.handled, int)
    v1 = store.variant_stats(RUN)[0]
    assert v1.examples == ("p1-1", "p1-2") and dict(v1.hist) == {1_000: 8}


def test_sessions_filter_by_service_and_host(store: Store) -> None:
    store.create_run("a", 1, "checkout", "web-1")
    store.create_run("b", 2, "checkout", "web-2")
    store.create_run("c", 3, "billing", "web-1")
    for run_id in ("a", "b", "c"):
        store.open_session(f"{run_id}-1", run_id, 0, 1, "p1", "1", 10)
    assert [s["session_id"] for s in store.sessions(service="checkout")] == ["a-1", "b-1"]
    assert [s["session_id"] for s in store.sessions(host="web-1")] == ["a-1", "c-1"]
    assert [s["session_id"] for s in store.sessions(service="checkout", host="web-1")] == ["a-1"]
    assert store.count_matching(SessionFilter(service="checkout")) == (2, False)
    assert store.count_matching(SessionFilter(host="web-2")) == (1, False)


def test_size_limit_prunes_oldest_ended_runs(store: Store, tmp_path) -> None:
    from flowagent.store.limit import enforce

    data_dir = tmp_path / "limits"
    for i, run_id in enumerate(("old", "mid", "current")):
        store.create_run(run_id, i, None, "h")
        store.finish_run(run_id, RunEnd(("app.py",), "/", "wrap", 10 + i, 0, "finished"))
        (data_dir / "runs" / run_id).mkdir(parents=True)
        (data_dir / "runs" / run_id / "sidecar.log").write_bytes(b"x" * 10_000)
    store.create_run("live", 5, None, "h")
    assert enforce(store, str(data_dir), 0, "current").runs == ()  # 0: no limit
    pruned = enforce(store, str(data_dir), 1, "current")  # nothing fits: all that may go
    assert pruned.runs == ("old", "mid") and pruned.freed_bytes > 0
    assert sorted(r["run_id"] for r in store.runs()) == ["current", "live"]
    assert sorted(p.name for p in (data_dir / "runs").iterdir()) == ["current"]


def test_size_limit_walks_an_ended_run_once(store: Store, tmp_path) -> None:
    import os

    from flowagent.store.limit import SIZES, enforce, runs_bytes, tree_bytes

    data_dir = tmp_path / "limits"
    runs = data_dir / "runs"
    for i, run_id in enumerate(("old", "current")):
        store.create_run(run_id, i, None, "h")
        store.finish_run(run_id, RunEnd(("app.py",), "/", "wrap", 10 + i, 0, "finished"))
    store.create_run("live", 5, None, "h")
    for run_id in ("old", "current", "live"):
        (runs / run_id / "rings").mkdir(parents=True)
        (runs / run_id / "sidecar.log").write_bytes(b"x" * 10_000)
    (runs / "stray").write_bytes(b"y" * 5_000)
    walked = tree_bytes(str(runs))
    assert enforce(store, str(data_dir), 1 << 40, "current").size_bytes == (
        store.stored_bytes() + walked)
    old = tree_bytes(str(runs / "old"))
    assert (runs / SIZES).read_text().split() == [
        "old", str(os.lstat(runs / "old").st_mtime_ns), str(old)]
    for run_id in ("old", "current", "live"):  # files grow: the ended run is not walked again
        with open(runs / run_id / "sidecar.log", "ab") as f:
            f.write(b"z" * 100_000)
    assert runs_bytes(str(runs), {"old"}) == tree_bytes(str(runs)) - tree_bytes(
        str(runs / "old")) + old
    (runs / "old" / "late.log").write_bytes(b"w")  # its directory changed: walked again
    assert runs_bytes(str(runs), {"old"}) == tree_bytes(str(runs))
    everything = tree_bytes(str(runs))
    assert runs_bytes(str(runs)) == everything  # nothing settled: all walked
    pruned = enforce(store, str(data_dir), 1, "current")
    assert pruned.runs == ("old",) and not (runs / "old").exists()
    assert not (runs / SIZES).exists()  # a pruned run's entry goes with it
