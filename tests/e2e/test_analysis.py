"""Analysis on a synthetic program with planted facts: flow variants, error clusters, timing
regressions, new functions and shapes between runs, hooks, retention and live control."""

from __future__ import annotations

import json

import pytest

from helpers import REPO, run_cli, write_files

pytestmark = pytest.mark.e2e

APP = {
    "shopapp.py": """
        import time

        VERSION = 1

        def handle(kind, payload):
            if kind == "a":
                return route_a(payload)
            if kind == "b":
                return route_b(payload)
            return route_c(payload)

        def route_a(payload):
            if VERSION == 2:
                time.sleep(0.003)
                audit(payload)
            return store(payload)

        def route_b(payload):
            try:
                return risky(payload)
            except ValueError:
                return None

        def route_c(payload):
            return explode(payload)

        def store(payload):
            return {"id": 1, "ok": True}

        def risky(payload):
            raise ValueError("no")

        def explode(payload):
            raise KeyError("gone")

        def audit(payload):
            return len(payload)
    """,
    "drive.py": """
        import sys
        import shopapp

        shopapp.VERSION = int(sys.argv[1])
        plan = ["a"] * 10 + ["b"] * 5 + ["c"] * 3
        for i, kind in enumerate(plan):
            payload = {"user": "u", "qty": i}
            if shopapp.VERSION == 2:
                payload["email"] = "x"
            try:
                shopapp.handle(kind, payload)
            except KeyError:
                pass
        print("done")
    """,
}


def run_version(tmp_path, version, data, *extra, env=None):
    proc = run_cli(["run", "--data-dir", str(data), "--exclude", "drive", *extra, "drive.py",
                    str(version)], tmp_path, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"done\n", proc.stderr.decode()
    return proc


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    write_files(root, APP)
    data = root / "data"
    run_version(root, 1, data)
    run_version(root, 2, data)
    runs = json.loads(run_cli(["runs", "--json", "--data-dir", str(data)], root).stdout)
    return root, data, runs[1]["run_id"], runs[0]["run_id"]


def cli_json(root, data, *args):
    proc = run_cli([*args, "--json", "--data-dir", str(data)], root)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_variants_and_error_clusters_are_the_planted_ones(two_runs):
    root, data, run1, _ = two_runs
    rep = cli_json(root, data, "stats", "--run", run1)
    variants = sorted((v["count"], v["root"], v["failed"]) for v in rep["variants"])
    assert variants == [(3, "shopapp:handle", 3), (5, "shopapp:handle", 0),
                        (10, "shopapp:handle", 0)]
    assert abs(sum(v["share"] for v in rep["variants"]) - 1) < 1e-9
    clusters = {(c["exception"], c["function"], c["handled"]): c for c in rep["error_clusters"]}
    assert set(clusters) == {("ValueError", "shopapp:risky", True),
                             ("KeyError", "shopapp:explode", False)}
    assert clusters[("ValueError", "shopapp:risky", True)]["count"] == 5
    assert clusters[("KeyError", "shopapp:explode", False)]["path"] == [
        "shopapp:handle", "shopapp:route_c", "shopapp:explode"]
    fns = {f["function"]: f for f in rep["functions"]}
    assert fns["shopapp:handle"]["calls"] == 18 and fns["shopapp:handle"]["roots"] == 18
    assert fns["shopapp:route_b"]["partials"] == 5
    assert [(h["function"], h["errors"]) for h in rep["error_hotspots"]] == [
        ("shopapp:risky", 5), ("shopapp:explode", 3), ("shopapp:handle", 3),
        ("shopapp:route_c", 3)]
    assert rep["session_durations"]["count"] == 18
    text = run_cli(["stats", "--run", run1, "--data-dir", str(data)], root).stdout.decode()
    assert "FLOW VARIANTS" in text and "ERROR CLUSTERS" in text and "KeyError" in text


def test_diff_reports_new_function_shape_and_slowdown(two_runs):
    root, data, run1, run2 = two_runs
    d = cli_json(root, data, "diff", run1, run2)
    assert d["functions"] == {"new": ["shopapp:audit"], "removed": []}
    assert {"from": "shopapp:route_a", "to": "shopapp:audit"} in d["edges"]["new"]
    new_inputs = [s for s in d["shapes"]["new"] if s["function"] == "shopapp:store"]
    assert [json.loads(s["shape"]) for s in new_inputs] == [
        {"payload": "dict{email:str,qty:int,user:str}"}]
    slower = {t["function"]: t for t in d["timing"] if t["change"] == "slower"}
    assert "shopapp:route_a" in slower and slower["shopapp:route_a"]["ratio"] > 10
    assert d["errors"] == {"new": [], "gone": []}
    same = cli_json(root, data, "diff", run1, run1)
    assert same["timing"] == [] and same["functions"] == {"new": [], "removed": []}


def test_merged_export_of_two_runs_adds_up(two_runs):
    root, data, run1, run2 = two_runs
    g = json.loads(run_cli(["export", "-f", "json", "--run", run1, "--run", run2,
                            "--data-dir", str(data)], root).stdout)
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["shopapp:handle"]["occurrences"] == 36
    assert g["stats"]["total_sessions"] == 36


HOOK = """
import json, os

def record(event, data):
    with open(os.environ["HOOK_OUT"], "a") as f:
        f.write(json.dumps([event, data.get("name"), data.get("result")]) + "\\n")

def broken(event, data):
    raise RuntimeError("hook failure on purpose")
"""


def test_hooks_run_in_the_sidecar_and_failures_are_reported(tmp_path):
    write_files(tmp_path, {**APP, "myhooks.py": HOOK})
    out = tmp_path / "hook.jsonl"
    env = {"HOOK_OUT": str(out), "FLOWAGENT_HOOKS": "myhooks:record,myhooks:broken"}
    proc = run_version(tmp_path, 1, tmp_path / "d", env=env)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for e in events if e[0] == "session") == 18
    assert events[-1][0] == "run_end"
    assert {e[2] for e in events if e[0] == "session"} == {"success", "partial", "error"}
    err = proc.stderr.decode()
    assert "hook failures" in err and "hook failure on purpose" in err
    runs = json.loads(run_cli(["runs", "--json", "--data-dir", str(tmp_path / "d")],
                              tmp_path).stdout)
    assert runs[0]["hook_errors"] == 19 and runs[0]["sessions"] == 18


def test_retention_keeps_exemplars_failures_and_a_recent_window(tmp_path):
    write_files(tmp_path, APP)
    data = tmp_path / "d"
    run_version(tmp_path, 1, data, env={"FLOWAGENT_RETENTION_SESSIONS": "2"})
    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    rows = store.db.execute("SELECT tree_kept, result, COUNT(*) FROM sessions "
                            "GROUP BY tree_kept, result").fetchall()
    kept = {(r[0], r[1]): r[2] for r in rows}
    # 3 exemplars (one per variant; the b and c ones also start their error clusters),
    # the other 2 + 2 failures, the 2 most recent successes; 7 older successes pruned.
    assert kept == {(3, "success"): 1, (3, "partial"): 1, (3, "error"): 1,
                    (2, "partial"): 4, (2, "error"): 2, (1, "success"): 2,
                    (0, "success"): 7}
    pruned = [r[0] for r in store.db.execute(
        "SELECT session_id FROM sessions WHERE tree_kept=0")]
    assert pruned and all(store.session_calls(s) == [] for s in pruned)
    kept_ids = [r[0] for r in store.db.execute(
        "SELECT session_id FROM sessions WHERE tree_kept>0")]
    assert all(store.session_calls(s) for s in kept_ids)
    # pruned trees leave no chunk behind that only they used
    assert store.db.execute("SELECT COUNT(*) FROM chunks WHERE chunk_id NOT IN "
                            "(SELECT chunk_id FROM session_chunks)").fetchone()[0] == 0
    # aggregates still count every session
    calls = store.db.execute("SELECT calls FROM graph_nodes g JOIN functions f ON "
                             "f.fid=g.fid AND f.run_id=g.run_id WHERE f.name=?",
                             ("shopapp:handle",)).fetchone()[0]
    assert calls == 18


CONTROLLED = """
import os, subprocess, sys, time
import shopapp
from flowagent.agent import recorder

def control(*args):
    subprocess.run([sys.executable, "-m", "flowagent", "control", *args,
                    "--data-dir", os.environ["DATA"]], check=True, capture_output=True)
    # The sidecar writes the change into this process's ring; the flusher reads it there.
    recording = args[0] == "--resume"
    deadline = time.monotonic() + 60
    while recorder.S.on != recording:
        if time.monotonic() > deadline:
            sys.exit(f"{args[0]} never reached this process")
        time.sleep(0.01)

for phase in ("on", "paused", "on-again"):
    if phase == "paused":
        control("--pause")
    elif phase == "on-again":
        control("--resume")
    for i in range(5):
        shopapp.handle("a", {"n": i})
print("done")
"""


def test_pause_and_resume_while_running(tmp_path):
    write_files(tmp_path, {**APP, "controlled.py": CONTROLLED})
    data = tmp_path / "d"
    env = {"DATA": str(data), "PYTHONPATH": str(REPO)}
    proc = run_cli(["run", "--data-dir", str(data), "--exclude", "controlled",
                    "controlled.py"], tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    assert store.count_sessions() == 10


DRIFTING = """
import shopapp

for i in range(12):
    payload = {"user": "u", "qty": i}
    if i >= 4:
        payload["email"] = "e"       # field appears in the 5th session
    if i >= 8:
        payload["qty"] = str(i)      # type changes in the 9th
    if i >= 10:
        del payload["user"]          # field disappears in the 11th
    shopapp.handle("a", payload)
print("done")
"""


def test_shape_drift_and_stubs_report_the_planted_changes(tmp_path):
    write_files(tmp_path, {**APP, "drifting.py": DRIFTING})
    data = tmp_path / "d"
    proc = run_cli(["run", "--data-dir", str(data), "drifting.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    rep = cli_json(tmp_path, data, "stats")
    sessions = [s["session_id"] for s in sorted(
        json.loads(run_cli(["sessions", "--json", "--data-dir", str(data)], tmp_path).stdout),
        key=lambda s: s["started_ns"])]
    events = [(e["kind"], e["path"], e["session"]) for e in rep["drift"]
              if e["function"] == "shopapp:store" and e["io"] == "in"]
    assert events == [("appeared", "payload.email", sessions[4]),
                      ("changed", "payload.qty", sessions[8]),
                      ("disappeared", "payload.user", sessions[10])]
    merged = rep["shapes"]["shopapp:store"]["merged"]["inputs"]["payload"]
    assert merged == "dict{email?:str,qty:int|str,user?:str}"
    out = tmp_path / "stubs"
    proc = run_cli(["stubs", "-o", str(out), "--data-dir", str(data)], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    stub = (out / "shopapp.pyi").read_text()
    import ast

    ast.parse(stub)
    # One TypedDict per structure, named after the first function that used it.
    assert "class HandlePayload(TypedDict):" in stub
    assert "email: NotRequired[str]" in stub and "qty: int | str" in stub
    assert "def store(payload: HandlePayload) -> HandleResult: ..." in stub


def test_cpu_time_per_call_is_measured_when_asked(tmp_path):
    write_files(tmp_path, {"work.py": """
        import time

        def busy():
            x = 0
            for i in range(3_000_000):
                x += i
            return x

        def idle():
            time.sleep(0.2)
    """, "main.py": """
        import work
        work.busy(); work.idle()
    """})
    data = tmp_path / "d"
    proc = run_cli(["run", "--cpu-time", "--data-dir", str(data), "--exclude", "main",
                    "main.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    fns = {f["function"]: f for f in cli_json(tmp_path, data, "stats")["functions"]}
    busy, idle = fns["work:busy"], fns["work:idle"]
    # CPU time is work, not wall time, so a busy machine does not change these: the loop
    # needs tens of milliseconds of CPU, the sleep almost none (however long it waited;
    # under a heavy load the waking thread's few milliseconds show: the margins allow them).
    assert busy["cpu_ns"] > 1_000_000
    assert idle["cpu_ns"] < 0.2 * idle["total_ns"] and busy["cpu_ns"] > 10 * idle["cpu_ns"]
    sessions = json.loads(run_cli(["sessions", "--json", "--data-dir", str(data)],
                                  tmp_path).stdout)
    tree = json.loads(run_cli(["trace", sessions[0]["session_id"], "--json", "--data-dir",
                               str(data)], tmp_path).stdout)
    assert tree["nodes"][0]["cpu_ns"] > 0
