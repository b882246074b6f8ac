"""The command line end to end: run → runs / sessions / trace / export, errors, accounting."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from helpers import REPO, record, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's demo recorded once (the real launcher, sidecar, rings and store)."""
    data = tmp_path_factory.mktemp("demo") / "data"
    proc = run_cli(["run", "--data-dir", str(data), "demo/run_demo.py"], REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return data, proc


def cli(data, *args, ok=True):
    proc = run_cli([*args, "--data-dir", str(data)], REPO)
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_demo_output_unchanged_and_summary_printed(demo):
    data, proc = demo
    plain = subprocess.run([sys.executable, "demo/run_demo.py"], cwd=REPO, capture_output=True)
    assert proc.stdout == plain.stdout
    err = proc.stderr.decode()
    assert "flowagent: run " in err and " sessions, " in err and " dropped events" in err
    assert "flowagent sessions" in err  # says how to look at it


def test_runs_sessions_trace(demo):
    data, _ = demo
    runs = json.loads(cli(data, "runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["exit_code"] == 0 and runs[0]["sessions"] >= 20
    sessions = json.loads(cli(data, "sessions", "--json").stdout)
    names = {s["name"] for s in sessions}
    assert {"__main__:main", "<request>:GET /products/<sku>", "<request>:POST /checkout"} <= names
    failed = [s for s in sessions if s["name"] == "<request>:POST /checkout"
              and s["result"] == "error"]
    assert len(failed) == 2  # the two 500s: the view raised, Flask answered 500
    text = cli(data, "trace", failed[0]["session_id"]).stdout.decode()
    assert "<request>:POST /checkout" in text and "HTTP 500" in text
    assert "shop.checkout:checkout" in text
    tree = json.loads(cli(data, "trace", failed[0]["session_id"], "--json").stdout)
    assert tree["nodes"][0]["timestamp_start"].endswith("Z")
    assert {e["branch"] for e in tree["edges"]} >= {"error"}
    table = cli(data, "sessions").stdout.decode()
    assert "SESSION" in table and "<request>:GET /health" in table


def test_unknown_ids_are_clear_errors(demo):
    data, _ = demo
    proc = cli(data, "trace", "nope-1", ok=False)
    assert proc.returncode == 2
    assert proc.stderr.decode().count("\n") == 1 and "no session 'nope-1'" in proc.stderr.decode()
    proc = cli(data, "sessions", "--run", "zzz", ok=False)
    assert proc.returncode == 2 and "no run 'zzz'" in proc.stderr.decode()


def test_exports_merged_graph_contract(demo):
    data, _ = demo
    g = json.loads(cli(data, "export", "--format", "json").stdout)
    assert g["graph_type"] == "merged"
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes["shop.inventory:stock_level"]["occurrences"] > 10
    assert "shop.inventory:stock_level" in g["stats"]["error_nodes"]
    edge = {(e["from"], e["to"], e["branch"]): e["frequency"] for e in g["edges"]}
    assert edge[("shop.inventory:reserve", "shop.inventory:stock_level", "error")] >= 1
    assert g["stats"]["total_sessions"] >= 20 and g["stats"]["frequent_paths"]
    assert nodes["shop.pricing:apply_discount"]["input_shape"] == {
        "subtotal": "int", "rule": "str", "value": "int"}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) is not installed")
def test_dot_export_renders(demo, tmp_path):
    data, _ = demo
    out = tmp_path / "g.dot"
    cli(data, "export", "--format", "dot", "-o", str(out))
    svg = subprocess.run(["dot", "-Tsvg", str(out)], capture_output=True, timeout=60)
    assert svg.returncode == 0 and b"<svg" in svg.stdout
    sessions = json.loads(cli(data, "sessions", "--json").stdout)
    one = tmp_path / "s.dot"
    cli(data, "export", "--format", "dot", "--session", sessions[3]["session_id"], "-o", str(one))
    assert subprocess.run(["dot", "-Tsvg", str(one)], capture_output=True).returncode == 0


def test_trace_formats_stream_every_session(demo):
    data, _ = demo
    chrome = json.loads(cli(data, "export", "--format", "chrome").stdout)
    calls = json.loads(cli(data, "runs", "--json").stdout)[0]["calls"]
    assert sum(1 for e in chrome["traceEvents"] if e["ph"] == "X") == calls
    collapsed = cli(data, "export", "--format", "collapsed").stdout.decode().splitlines()
    assert any(line.startswith("__main__:main;") for line in collapsed)


@pytest.mark.parametrize("args, message", [
    (["run", "--include", "shop/api.py", "x.py"], "did you mean 'shop.api'"),
    (["run", "--backend", "fast", "x.py"], "unknown backend 'fast'"),
    (["run", "missing.py"], "no such script 'missing.py'"),
    (["run", "-m", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
    (["run", "--", "no-such-program-xyz"], "not found on PATH"),
    (["run", "demo"], "is a directory without __main__.py"),
    (["run"], "nothing to run"),
    (["export", "--format", "png"], "invalid choice"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "demo").mkdir()
    proc = run_cli(args, tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert message in err and err.startswith("flowagent: error:") and err.count("\n") == 1


def test_bad_config_file_names_key_and_file(tmp_path):
    (tmp_path / "flowagent.toml").write_text('inclde = ["x"]\n')
    (tmp_path / "x.py").write_text("print(1)\n")
    proc = run_cli(["run", "x.py"], tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "'inclde'" in err and "flowagent.toml" in err


def test_config_file_include_is_used(tmp_path):
    rec = record("""
        import lib, other
        lib.f(); other.g()
    """, tmp_path, extra_files={
        "pyproject.toml": "[tool.flowagent]\ninclude = ['lib']\n",
        "lib.py": "def f():\n    return 1\n", "other.py": "def g():\n    return 2\n"})
    assert rec.function_names() == {"lib:f"}


def test_disabled_records_nothing(tmp_path):
    rec = record("""
        def f():
            return 1
        print(f())
    """, tmp_path, env={"FLOWAGENT_ENABLED": "0"})
    assert rec.stdout == "1\n"
    assert not rec.db.exists()


def test_disabled_launcher_becomes_the_program(tmp_path):
    # FLOWAGENT_ENABLED=0: the launcher execs the program (no second process, nothing of
    # flowagent between the caller and the program, so signals and status are its own).
    (tmp_path / "p.py").write_text("import os, sys\nprint(os.getppid())\nsys.exit(4)\n")
    proc = run_cli(["run", "--data-dir", str(tmp_path / "d"), "p.py"], tmp_path,
                   env={"FLOWAGENT_ENABLED": "0"})
    assert proc.returncode == 4 and proc.stderr == b""
    assert int(proc.stdout) == os.getpid()  # its parent is us, not a launcher
    assert not (tmp_path / "d").exists()


def test_kill_switch_words_are_the_configs():
    # flowagent run reads FLOWAGENT_ENABLED before importing config.py, with the same words.
    from flowagent import config
    from flowagent.cli import run as cli

    assert set(cli._OFF) == config._FALSE


def test_run_options_parse_like_the_help_says(tmp_path):
    from flowagent.cli.run import parse_run_options, split_run_argv

    opts, kind, name, args = split_run_argv(
        ["--include", "a", "--include=b.*", "-v", "--no-nested", "--ring-size", "1MiB",
         "app.py", "--include", "x"])
    assert (kind, name, args) == ("script", "app.py", ["--include", "x"])
    assert parse_run_options(opts) == {"include": ["a", "b.*"], "verbose": True,
                                       "nested": False, "ring_size": "1MiB"}
    proc = run_cli(["run", "--help"], tmp_path)
    assert proc.returncode == 0
    for option in ("--include GLOB", "--ring-size SIZE", "-v, --verbose", "--no-nested"):
        assert option in proc.stdout.decode()


def test_produced_equals_stored_plus_dropped_under_overload(tmp_path):
    # A 64 KiB ring and a burst of 300 000 calls: the producer never blocks, drops whole
    # batches when the ring is full, and every dropped event is counted.
    rec = record("""
        def leaf(i):
            return i

        def burst():
            for i in range(300_000):
                leaf(i)

        burst()
        print("done")
    """, tmp_path, options=["--ring-size", "64KiB"], timeout=180, check=False)
    assert rec.returncode == 0 and rec.stdout == "done\n"
    info = rec.run_info()
    # Rows with result 3 are placeholders for calls whose own record was dropped (their
    # finished children name them): stored as `incomplete`, not counted as events.
    stored = rec.store().stored_calls()["calls"]
    assert info["produced_events"] == stored + info["dropped_events"]
    assert info["produced_events"] == 300_001
    if info["dropped_events"]:
        assert "events were dropped" in rec.stderr


def test_replayed_frames_are_stored_once(tmp_path):
    rec = record("""
        def f(x):
            return g(x) + 1

        def g(x):
            return x

        for i in range(50):
            f(i)

        # A second name for this process's ring: the sidecar removes a drained ring, and
        # this test replays one.
        import glob, os, time
        rings = os.path.join(os.environ["FLOWAGENT_RUN_DIR"], "rings")
        while not glob.glob(os.path.join(rings, f"{os.getpid()}-*.ring")):
            time.sleep(0.01)
        ring = glob.glob(os.path.join(rings, f"{os.getpid()}-*.ring"))[0]
        os.link(ring, ring + ".kept")
    """, tmp_path)
    before = rec.store().stored_calls()["calls"]
    assert before == 100
    rec.close()
    kept = list((rec.data_dir / "runs").glob("*/rings/*.ring.kept"))
    assert kept and not list((rec.data_dir / "runs").glob("*/rings/*.ring"))
    for ring in kept:
        ring.rename(str(ring)[:-len(".kept")])
    # Rewind every ring's tail to 0, as if the sidecar died before releasing what it stored.
    for ring in (rec.data_dir / "runs").glob("*/rings/*.ring"):
        with open(ring, "r+b") as f:
            f.seek(128)
            f.write(struct.pack("<Q", 0))
    run_id = rec.run_info()["run_id"]
    rec.close()
    # ... and forget the position stored with the data: only sequence numbers remain to
    # recognise frames that are already stored.
    import sqlite3

    with sqlite3.connect(rec.db) as db:
        db.execute("UPDATE processes SET ring_tail=0")
    proc = run_cli(["sidecar", "--resume", run_id, "--data-dir", str(rec.data_dir)], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().splitlines()[-1])
    assert summary["duplicate_frames"] >= 1
    after = rec.store().stored_calls()["calls"]
    assert after == before
    assert rec.store().db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 50


def test_unwritable_data_dir_runs_the_program_unrecorded(tmp_path):
    (tmp_path / "p.py").write_text("import sys\nprint('hi')\nsys.exit(3)\n")
    proc = run_cli(["run", "--data-dir", "/proc/flowagent-cannot-write-here", "p.py"], tmp_path)
    assert proc.returncode == 3 and proc.stdout == b"hi\n"
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "cannot create the data directory" in err
    assert "without recording" in err


def test_speedscope_aggregate_is_one_sampled_profile(demo):
    data, _ = demo
    doc = json.loads(cli(data, "export", "--format", "speedscope", "--aggregate").stdout)
    assert [p["type"] for p in doc["profiles"]] == ["sampled"]
    prof = doc["profiles"][0]
    assert len(prof["samples"]) == len(prof["weights"]) > 10
    names = {f["name"] for f in doc["shared"]["frames"]}
    assert "__main__:main" in names and "shop.inventory:stock_level" in names
    evented = json.loads(cli(data, "export", "--format", "speedscope").stdout)
    assert {p["type"] for p in evented["profiles"]} == {"evented"}
    bad = cli(data, "export", "--format", "dot", "--aggregate", ok=False)
    assert bad.returncode == 2 and "--aggregate" in bad.stderr.decode()
