"""Many sidecars, one PostgreSQL: the merged result does not depend on how sessions were
split between sidecars (tests/postgres/fleet_host.py is one simulated host)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli

pytest.importorskip("psycopg")

from flowagent.store.postgres import PostgresStore  # noqa: E402

HOST = Path(__file__).with_name("fleet_host.py")
PROCESSES = 8


def start_host(url: str, data_dir: Path, run_id: str, procs: range) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HOST), url, str(data_dir), run_id,
                             *map(str, procs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def merged(url: str, runs: list[str], cwd: Path) -> dict[str, Any]:
    """``flowagent export --format json`` of these runs from the server."""
    proc = run_cli(["export", "--format", "json", "--store", url,
                    *(a for r in runs for a in ("--run", r))], cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    g = json.loads(proc.stdout)
    g.pop("runs")
    return g


def trees(store: PostgresStore, runs: list[str]) -> dict[str, Any]:
    out = {}
    for r in runs:
        for s in store.sessions(r, limit=100_000):
            g = store.session_graph(s["session_id"])
            g.pop("run_id")
            out[s["session_id"]] = g
    return out


def test_one_sidecar_and_four_concurrent_sidecars_give_the_same_merge(
        pg_url: str, tmp_path: Path) -> None:
    one = finish(start_host(pg_url, tmp_path / "one", "one", range(PROCESSES)))
    four = [start_host(pg_url, tmp_path / f"four{i}", f"four-{i}", range(i * 2, i * 2 + 2))
            for i in range(4)]
    results = [finish(p) for p in four]
    assert one["waiting"] == 0 and all(r["waiting"] == 0 for r in results)
    assert one["stored_events"] == sum(r["stored_events"] for r in results) > 0

    store = PostgresStore(pg_url)
    quartet = [f"four-{i}" for i in range(4)]
    assert store.count_sessions("one") == PROCESSES * 60
    assert sum(store.count_sessions(r) for r in quartet) == PROCESSES * 60
    single = merged(pg_url, ["one"], tmp_path)
    assert single["stats"]["total_sessions"] == PROCESSES * 60
    assert any(n["errors"] for n in single["nodes"])  # failures are part of what is compared
    assert merged(pg_url, quartet, tmp_path) == single
    assert trees(store, quartet) == trees(store, ["one"])
    store.close()
