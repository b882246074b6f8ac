"""The size limit on a shared PostgreSQL store: the oldest ended runs of the whole fleet go
first, each by dropping its partitions whole; runs still recording and the current one stay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

import psycopg  # noqa: E402

from flowagent.store import pgschema  # noqa: E402
from flowagent.store.api import RunEnd  # noqa: E402
from flowagent.store.limit import enforce_server  # noqa: E402
from flowagent.store.postgres import PostgresStore, SpoolStore  # noqa: E402


def partitions(url: str, run_id: str) -> list[bool]:
    with psycopg.connect(url) as conn:
        return [conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                             (pgschema.partition_name(t, run_id),)).fetchone()[0]
                for t in pgschema.PARTITIONED]


def test_server_limit_drops_whole_runs_oldest_first(pg_url: str, tmp_path: Path) -> None:
    writer = SpoolStore(pg_url, str(tmp_path / "host"), forward=False)
    t0 = time.time_ns()
    runs = ["old", "mid", "new", "live"]
    for i, run_id in enumerate(runs):
        writer.create_run(run_id, t0 + i, "shop", "host-a")
        if run_id != "live":
            writer.finish_run(run_id, RunEnd(("app.py",), "/", "wrap", t0 + i + 1, 0,
                                             "finished"))
    assert writer.forwarder.drain(60) == 0
    writer.close()
    for run_id in runs:
        assert partitions(pg_url, run_id) == [True, True, True]
    server = PostgresStore(pg_url)
    size = server.stored_bytes()
    server.close()
    # Within the limit: nothing to do.
    assert enforce_server(pg_url, size + 1_000_000, "new").runs == ()
    # Just over: the oldest ended run goes, partitions and rows.
    pruned = enforce_server(pg_url, size - 1, "new")
    assert pruned.runs == ("old",)
    assert pruned.freed_bytes > 0 and pruned.size_bytes <= size - 1
    assert partitions(pg_url, "old") == [False, False, False]
    # Far over: every ended run but the current one; the live run stays.
    pruned = enforce_server(pg_url, 1, "new")
    assert pruned.runs == ("mid",)
    server = PostgresStore(pg_url)
    assert sorted(r["run_id"] for r in server.runs()) == ["live", "new"]
    server.close()
    assert partitions(pg_url, "live") == [True, True, True]
    # A SQLite store has no server to limit.
    assert enforce_server(str(tmp_path / "flowagent.db"), 1, "x").runs == ()


def test_a_run_ending_limits_the_server(pg_url: str, tmp_path: Path) -> None:
    import os
    import subprocess

    from helpers import flowagent_cmd

    (tmp_path / "app.py").write_text("def f(i):\n    return i\n\nfor i in range(3):\n    f(i)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    env.pop("PYTHONPATH", None)
    for host in ("host-a", "host-b"):  # two hosts, one server, the same limit
        proc = subprocess.run(flowagent_cmd("run", "--data-dir", str(tmp_path / host),
                                            "--store", pg_url, "--max-data-size", "1MiB",
                                            "app.py"),
                              cwd=tmp_path, env=dict(env, FLOWAGENT_HOST=host),
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
    server = PostgresStore(pg_url)
    try:
        # the second run's end dropped the first (another host's, ended): only it is left
        assert [r["host"] for r in server.runs()] == ["host-b"]
    finally:
        server.close()
