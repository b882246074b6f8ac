"""Runs: the row a sidecar makes as it starts names the service and the host."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import record

from flowagent.store.api import open_store
from flowagent.store.sqlite import SQLiteStore


def test_run_row_carries_service_and_host(store_url: str) -> None:
    store = open_store(store_url)
    assert store.create_run("r1", 1_000, "checkout", "web-1")
    assert store.create_run("r2", 2_000, None, "web-2")
    assert not store.create_run("r1", 3_000, "other", "web-3")  # never two rows of one run
    store.close()
    reader = open_store(store_url, readonly=True)
    r1, r2 = reader.run("r1"), reader.run("r2")
    assert r1 is not None and r2 is not None
    assert (r1["service"], r1["host"], r1["status"], r1["started_ns"]) == (
        "checkout", "web-1", "running", 1_000)
    assert (r2["service"], r2["host"]) == (None, "web-2")
    reader.close()


def test_store_without_the_columns_gains_them(tmp_path: Path) -> None:
    """A SQLite store written before runs named their service and host opens and keeps its
    runs."""
    path = tmp_path / "flowagent.db"
    SQLiteStore(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN service")
    db.execute("ALTER TABLE runs DROP COLUMN host")
    db.execute("INSERT INTO runs(run_id, started_ns, status) VALUES('old', 5, 'finished')")
    db.commit()
    db.close()
    store = SQLiteStore(str(path))
    old = store.run("old")
    assert old is not None and old["status"] == "finished"
    assert (old["service"], old["host"]) == (None, None)
    assert store.create_run("new", 6, "svc", "h")
    store.close()


def test_recorded_run_names_its_service_and_host(tmp_path: Path) -> None:
    rec = record("def f():\n    return 1\n\nf()\n", tmp_path,
                 env={"FLOWAGENT_SERVICE": "billing", "FLOWAGENT_HOST": "host-a"})
    run = rec.run_info()
    assert (run["service"], run["host"]) == ("billing", "host-a")
    assert run["status"] == "finished"
    rec.close()


def test_host_defaults_to_the_machine(tmp_path: Path) -> None:
    import socket

    rec = record("def f():\n    return 1\n\nf()\n", tmp_path)
    run = rec.run_info()
    # without --service the run is named after its program (the script's stem)
    assert (run["service"], run["host"]) == ("prog", socket.gethostname())
    rec.close()
