"""Every hook field and every statistic is complete and the same on every reading: checked
field by field on a program with planted facts, on two identical runs, and on one recording
ingested twice (the rings of a run read again into fresh stores)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter

import pytest

from helpers import REPO, _clean_env, run_cli, write_files

pytestmark = pytest.mark.e2e

KINDS = {"ok": 12, "handled": 7, "fails": 5}

APP = {
    "orders.py": """
        def handle(kind, n):
            if kind == "ok":
                return total(n)
            if kind == "handled":
                try:
                    return check(n)
                except ValueError:
                    return None
            import lazy          # first imported (and first called) in a later session
            return lazy.boom(n)

        def total(n):
            return sum(price(i) for i in range(n))

        def price(i):
            return i * 2

        def check(n):
            raise ValueError(n)
    """,
    "lazy.py": """
        def boom(n):
            return deeper(n)

        def deeper(n):
            raise KeyError(n)
    """,
    "drive.py": """
        import orders

        plan = ["ok"] * 6 + ["handled"] * 7 + ["ok"] * 6 + ["fails"] * 5
        for kind in plan:
            try:
                orders.handle(kind, 3)
            except KeyError:
                pass

        # A second name for this process's ring: the sidecar removes a drained ring, and the
        # test reads this one again.
        import glob, os, time
        rings = os.path.join(os.environ["FLOWAGENT_RUN_DIR"], "rings")
        while not glob.glob(os.path.join(rings, f"{os.getpid()}-*.ring")):
            time.sleep(0.01)
        ring = glob.glob(os.path.join(rings, f"{os.getpid()}-*.ring"))[0]
        os.link(ring, ring + ".kept")
        print("done")
    """,
    "myhooks.py": """
        import json, os

        def record(event, data):
            with open(os.environ["HOOK_OUT"], "a") as f:
                f.write(json.dumps([event, data], sort_keys=True) + "\\n")
    """,
}

# what each planted kind of session calls, and how it ends
EXPECTED = {
    "ok": ({"orders:handle": 1, "orders:total": 1, "orders:price": 3}, "success", 0),
    "handled": ({"orders:handle": 1, "orders:check": 1}, "partial", 1),
    "fails": ({"orders:handle": 1, "lazy:boom": 1, "lazy:deeper": 1}, "error", 3),
}


def _kind(payload: dict) -> str:
    fns = set(payload["functions"])
    return "ok" if "orders:total" in fns else "handled" if "orders:check" in fns else "fails"


def _record(root, data, hook_out):
    proc = run_cli(["run", "--data-dir", str(data), "--exclude", "drive", "--exclude",
                    "myhooks", "drive.py"], root,
                   env={"HOOK_OUT": str(hook_out), "FLOWAGENT_HOOKS": "myhooks:record"},
                   timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"done\n", proc.stderr.decode()
    runs = json.loads(run_cli(["runs", "--json", "--data-dir", str(data)], root).stdout)
    return runs[0]["run_id"]


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    write_files(root, APP)
    out = []
    for i in (1, 2):
        data, hook_out = root / f"d{i}", root / f"hooks{i}.jsonl"
        run_id = _record(root, data, hook_out)
        out.append((data, run_id, _events(hook_out)))
    return root, out


def _check_session_payloads(events, run_id, data):
    from flowagent.store.sqlite import SQLiteStore

    sessions = [d for e, d in events if e == "session"]
    assert events[-1][0] == "run_end" and len(sessions) == sum(KINDS.values())
    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    try:
        stored = {r["session_id"]: dict(r) for r in store.db.execute(
            "SELECT * FROM sessions WHERE run_id=?", (run_id,))}
    finally:
        store.close()
    assert len({s["session_id"] for s in sessions}) == len(sessions) == len(stored)
    kinds = Counter()
    variant_of: dict[str, str] = {}
    for s in sessions:
        row = stored[s["session_id"]]
        kind = _kind(s)
        kinds[kind] += 1
        fn_calls, result, errors = EXPECTED[kind]
        assert set(s) == {"session_id", "run_id", "name", "result", "complete", "pid",
                          "started_ns", "duration_ns", "calls", "errors", "variant",
                          "functions", "function_calls"}
        assert s["run_id"] == run_id
        assert s["name"] == "orders:handle" == row["name"]
        assert s["result"] == result == row["result"] and s["complete"] is True
        assert s["pid"] == row["pid"] > 0
        assert s["started_ns"] == row["started_ns"] and s["duration_ns"] == row["duration_ns"] > 0
        assert s["calls"] == sum(fn_calls.values()) == row["calls"]
        assert s["errors"] == errors == row["errors"]
        assert s["functions"] == sorted(fn_calls) and "?" not in s["functions"]
        assert s["function_calls"] == dict(sorted(fn_calls.items()))
        assert s["variant"] == row["variant"] and variant_of.setdefault(kind, s["variant"]) == \
            s["variant"]
    assert kinds == KINDS and len(set(variant_of.values())) == 3
    starts = [s["started_ns"] for s in sessions]
    assert starts == sorted(starts)  # one thread, one session after the other


def test_every_session_hook_field_is_complete(two_runs):
    _root, runs = two_runs
    for data, run_id, events in runs:
        _check_session_payloads(events, run_id, data)
        end = events[-1][1]
        assert end["run_id"] == run_id and end["sessions"] == sum(KINDS.values())
        assert end["calls"] == sum(sum(EXPECTED[k][0].values()) * n for k, n in KINDS.items())
        assert end["errors"] == sum(EXPECTED[k][2] * n for k, n in KINDS.items())
        assert end["dropped_events"] == 0 and end["hook_errors"] == 0


def _stable(payload: dict) -> dict:
    """A session payload without what differs between two runs (ids, clocks, pids)."""
    return {k: v for k, v in payload.items()
            if k not in ("session_id", "run_id", "pid", "started_ns", "duration_ns")}


def test_two_identical_runs_give_the_same_hook_payloads(two_runs):
    _root, ((_, _, a), (_, _, b)) = two_runs
    assert [_stable(d) for e, d in a if e == "session"] == \
        [_stable(d) for e, d in b if e == "session"]


def _rewound_copy(data, run_id, dest):
    """A copy of the run's rings with every ring rewound to its first byte (the run was
    small enough that no frame was overwritten), as if no sidecar had read them yet."""
    from flowagent.protocol.ring import OFF_CAPACITY, OFF_CONSUMER, OFF_HEAD, OFF_TAIL

    shutil.copytree(data / "runs" / run_id, dest)
    for kept in (dest / "rings").glob("*.ring.kept"):
        kept.rename(str(kept)[:-len(".kept")])
    for ring in (dest / "rings").glob("*.ring"):
        with open(ring, "r+b") as f:
            header = f.read(OFF_CONSUMER + 8)
            head, = struct.unpack_from("<Q", header, OFF_HEAD)
            cap, = struct.unpack_from("<Q", header, OFF_CAPACITY)
            assert 0 < head <= cap
            f.seek(OFF_TAIL)
            f.write(struct.pack("<QQ", 0, 0))  # tail, consumer pid
    return dest


def _reingest(root, data, run_id, name):
    """The rings of ``run_id`` read again by a fresh sidecar into a new store."""
    db = root / f"{name}.db"
    hook_out = root / f"{name}.jsonl"
    run_dir = _rewound_copy(data, run_id, root / f"{name}-run")
    env = _clean_env({"HOOK_OUT": str(hook_out)})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(root)])
    proc = subprocess.run(
        [sys.executable, "-m", "flowagent.sidecar", "--once", "--run-dir",
         str(run_dir), "--db", str(db), "--run-id", run_id,
         "--hook", "myhooks:record"], cwd=root, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return db, _events(hook_out)


def _stats(root, db_dir, run_id):
    proc = run_cli(["stats", "--json", "--run", run_id, "--data-dir", str(db_dir)], root)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_one_recording_read_twice_gives_identical_payloads_and_stats(two_runs):
    root, ((data, run_id, live), _) = two_runs
    readings = []
    for name in ("again1", "again2"):
        db, events = _reingest(root, data, run_id, name)
        d = root / f"{name}-data"
        d.mkdir()
        os.replace(db, d / "flowagent.db")
        _check_session_payloads(events, run_id, d)
        readings.append((events, _stats(root, d, run_id)))
    (ev1, st1), (ev2, st2) = readings
    assert ev1 == ev2  # every field, clocks and ids included
    assert [d for e, d in ev1 if e == "session"] == [d for e, d in live if e == "session"]
    for rep in (st1, st2):
        rep.pop("run")  # when the re-reading happened
        for p in rep["processes"]:
            p.pop("samples"), p.pop("cpu_s"), p.pop("max_rss_bytes")  # sampled live only
    assert st1 == st2


def test_every_stats_field_is_right_and_the_same_on_both_runs(two_runs):
    root, ((d1, r1, _), (d2, r2, _)) = two_runs
    reps = [_stats(root, d1, r1), _stats(root, d2, r2)]
    n_sessions = sum(KINDS.values())
    for rep in reps:
        assert rep["loss"] == {k: 0 for k in rep["loss"]} | {
            "produced_events": rep["loss"]["produced_events"]}
        assert rep["loss"]["produced_events"] > 0
        assert rep["session_durations"]["count"] == n_sessions
        fns = {f["function"]: f for f in rep["functions"]}
        want_calls = Counter()
        for kind, n in KINDS.items():
            for fn, c in EXPECTED[kind][0].items():
                want_calls[fn] += c * n
        assert {fn: f["calls"] for fn, f in fns.items()} == dict(want_calls)
        assert fns["orders:handle"]["roots"] == n_sessions
        assert fns["orders:handle"]["errors"] == KINDS["fails"]
        assert fns["orders:handle"]["partials"] == KINDS["handled"]
        assert fns["orders:check"]["errors"] == KINDS["handled"]
        for f in fns.values():
            assert f["kind"] and f["self_ns"] <= f["total_ns"]
            assert f["min_ns"] <= f["p50_ns"] <= f["p95_ns"] <= f["p99_ns"] <= f["max_ns"]
            assert f["mean_ns"] == f["total_ns"] // f["calls"]
        assert sorted((v["count"], v["failed"]) for v in rep["variants"]) == sorted(
            (n, n if EXPECTED[k][1] == "error" else 0) for k, n in KINDS.items())
        for v in rep["variants"]:
            assert v["root"] == "orders:handle" and v["examples"]
            assert v["duration"]["count"] == v["count"]
        assert {(c["exception"], c["function"], c["handled"], c["count"])
                for c in rep["error_clusters"]} == {
            ("ValueError", "orders:check", True, KINDS["handled"]),
            ("KeyError", "lazy:deeper", False, KINDS["fails"])}
        assert sorted((tuple(p["path"]), p["count"]) for p in rep["frequent_paths"]) == sorted([
            (("orders:handle", "orders:total", "orders:price"), KINDS["ok"]),
            (("orders:handle", "orders:check"), KINDS["handled"]),
            (("orders:handle", "lazy:boom", "lazy:deeper"), KINDS["fails"])])
        # handle returns an int in "ok" sessions, then None from the first "handled" one
        assert [(e["function"], e["io"], e["kind"], e["before"], e["after"])
                for e in rep["drift"]] == [("orders:handle", "out", "changed", "int", "None")]
        assert set(rep["shapes"]) == set(want_calls)
        assert [p["events"] for p in rep["processes"]] == [sum(want_calls.values())]

    def stable(rep):
        out = json.loads(json.dumps(rep))
        out.pop("run"), out.pop("processes"), out.pop("session_durations")
        for f in out["functions"] + out["error_hotspots"]:
            for k in list(f):
                if k.endswith("_ns"):
                    f.pop(k)
        for e in out["drift"]:
            e.pop("session"), e.pop("seen_ns")
        out["functions"].sort(key=lambda f: f["function"])
        for v in out["variants"]:
            v.pop("duration"), v.pop("first_seen_ns"), v.pop("examples")
        for c in out["error_clusters"]:
            c.pop("first_seen_ns"), c.pop("last_seen_ns"), c.pop("examples")
        for entry in out["shapes"].values():
            for io in ("in", "out"):
                for s in entry[io]:
                    s.pop("first_session"), s.pop("first_seen_ns")
        out["loss"].pop("produced_events")
        return out

    assert stable(reps[0]) == stable(reps[1])
