"""``flowagent sessions|stats|export --service NAME --host NAME`` and ``flowagent control
--service``, over runs recorded by the real ``flowagent run`` as two services on three hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli, write_files

from flowagent.store.sqlite import SQLiteStore

APP = '''
def handle(i):
    return {"i": i}

for i in range(3):
    handle(i)
'''

RUNS = [("shop", "host-a"), ("shop", "host-b"), ("shop", "host-a"), ("mail", "host-c")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fleet-cli")
    write_files(root, {"app.py": APP})
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    env.pop("PYTHONPATH", None)
    for service, host in RUNS:
        proc = subprocess.run([sys.executable, "-m", "flowagent", "run", "--data-dir", "data",
                               "app.py"], cwd=root,
                              env=dict(env, FLOWAGENT_SERVICE=service, FLOWAGENT_HOST=host),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    store = SQLiteStore(str(root / "data" / "flowagent.db"), readonly=True)
    runs: dict = {}
    for r in store.runs():  # newest first
        runs.setdefault((r["service"], r["host"]), []).append(r["run_id"])
    store.close()
    return root, runs


def cli(root: Path, *args: str) -> str:
    proc = run_cli([*args, "--data-dir", "data"], root, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def test_sessions_of_a_service_and_host(fleet: tuple[Path, dict]) -> None:
    root, runs = fleet
    rows = json.loads(cli(root, "sessions", "--service", "shop", "--host", "host-a", "--json"))
    assert {r["run_id"] for r in rows} == set(runs[("shop", "host-a")])
    assert len(rows) == 3 * len(runs[("shop", "host-a")])
    rows = json.loads(cli(root, "sessions", "--service", "shop", "--json"))
    assert {r["run_id"] for r in rows} == set(runs[("shop", "host-a")] + runs[("shop", "host-b")])
    text = cli(root, "sessions", "--host", "host-c", "--limit", "1")
    assert runs[("mail", "host-c")][0] in text and "(1 of 3 sessions of 1 runs shown" in text


def test_stats_and_export_of_a_service(fleet: tuple[Path, dict]) -> None:
    root, runs = fleet
    stats = cli(root, "stats", "--service", "shop", "--host", "host-b")
    assert stats.startswith(f"run {runs[('shop', 'host-b')][0]}:")
    latest_shop = cli(root, "stats", "--service", "shop")
    assert latest_shop.startswith(f"run {runs[('shop', 'host-a')][0]}:")  # the newest of shop
    merged = json.loads(cli(root, "export", "--format", "json", "--service", "shop"))
    shop = runs[("shop", "host-a")] + runs[("shop", "host-b")]
    want = json.loads(cli(root, "export", "--format", "json",
                          *[a for r in shop for a in ("--run", r)]))
    assert sorted(merged["runs"]) == sorted(shop)
    assert merged == want


def test_fleet_filters_errors(fleet: tuple[Path, dict]) -> None:
    root, runs = fleet
    for args in (["sessions", "--service", "nosuch"], ["stats", "--host", "nowhere"],
                 ["stats", "--run", runs[("mail", "host-c")][0], "--service", "mail"],
                 ["control", "--service", "bad name!", "--pause"],
                 ["control", "--service", "shop", "--run", "x", "--pause"]):
        proc = run_cli([*args, "--data-dir", "data"], root, timeout=60)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1, (args, err)
        assert err.startswith("flowagent: error: "), err


def test_control_of_a_service_is_kept_in_the_store(fleet: tuple[Path, dict]) -> None:
    root, _runs = fleet
    out = cli(root, "control", "--service", "mail", "--pause", "--include", "lib.*")
    assert out.startswith("service mail: ") and "0 running recordings" in out
    out = cli(root, "control", "--service", "mail", "--sample-rate", "0.5")
    state = json.loads(out.split(": ", 1)[1].split("; ", 1)[0])
    assert state == {"paused": True, "sample_rate": 0.5, "include": ["lib.*"], "exclude": []}
    store = SQLiteStore(str(root / "data" / "flowagent.db"), readonly=True)
    try:
        row = store.service_control("mail")
        assert (row.paused, row.sample_rate, row.include, row.generation) == (
            True, 0.5, ("lib.*",), 2)
    finally:
        store.close()
