"""End to end: recorded multi-process runs on two "hosts" into one PostgreSQL, and store and
forward with the server really stopped and started around and in the middle of a run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import flowagent_cmd, run_cli, wait_until, write_files
from pgserver import PgServer

pytest.importorskip("psycopg")

from flowagent.model.graph import from_aggregates, merge_all, to_contract  # noqa: E402
from flowagent.store.postgres import PostgresStore  # noqa: E402
from flowagent.store.sqlite import SQLiteStore  # noqa: E402

pytestmark = pytest.mark.e2e

SHOP = '''
class OutOfStock(Exception):
    pass


def price(item):
    return {"item": item, "cents": 100 * item}


def reserve(item):
    if item % 5 == 4:
        raise OutOfStock(item)
    return True


def checkout(item):
    p = price(item)
    try:
        reserve(item)
    except OutOfStock:
        return None
    return [p]
'''

WORKER = '''
import sys

import shop

for i in range(int(sys.argv[1])):
    shop.checkout(i)
print("worker", sys.argv[1])
'''

# Each shop.checkout at module level is one session; gate() lets a test act between phases.
PROG = '''
import os
import subprocess
import sys
import time

import shop


def gate(name):
    where = os.environ.get("FLEET_GATES")
    if not where:
        return
    open(os.path.join(where, name), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(where, "go-" + name)) and time.time() < deadline:
        time.sleep(0.01)


for i in range(12):
    shop.checkout(i)
subprocess.run([sys.executable, "worker.py", "7"], check=True)
gate("1")
for i in range(12, 24):
    shop.checkout(i)
gate("2")
subprocess.run([sys.executable, "worker.py", "9"], check=True)
for i in range(24, 36):
    shop.checkout(i)
print("done")
'''
SESSIONS = 36 + 7 + 9 + 2  # checkouts, worker checkouts, the two gates


def app(root: Path) -> Path:
    write_files(root, {"prog.py": PROG, "shop.py": SHOP, "worker.py": WORKER})
    return root


def start_run(cwd: Path, data_dir: Path, url: str, host: str,
              env: dict[str, str] | None = None) -> subprocess.Popen:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FLOWAGENT_")}
    e.pop("PYTHONPATH", None)
    e.update(env or {}, FLOWAGENT_HOST=host, FLOWAGENT_SERVICE="shop")
    return subprocess.Popen(flowagent_cmd("run", "--data-dir", str(data_dir), "--store", url,
                                          "prog.py"),
                            cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert out == "worker 7\nworker 9\ndone\n"  # the program's own output, untouched
    return out, err


def spool(data_dir: Path) -> SQLiteStore:
    return SQLiteStore(str(data_dir / "pg-spool.db"), readonly=True)


def spool_waiting(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / "pg-spool.db")
    try:
        return db.execute("SELECT COUNT(*) FROM spool_log").fetchone()[0]
    finally:
        db.close()


def sessions_of(store: Any, run_id: str) -> dict[str, Any]:
    """Every session of a run with its tree (the run id left out: compared across stores)."""
    out = {}
    for s in store.sessions(run_id, limit=100_000):
        g = store.session_graph(s["session_id"])
        out[s["session_id"]] = (s, g)
    return out


def cli_out(args: list[str], cwd: Path) -> str:
    proc = run_cli(args, cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def test_two_hosts_into_one_postgresql_show_the_union(pg_url: str, tmp_path: Path) -> None:
    a, b = app(tmp_path / "a"), app(tmp_path / "b")
    runs = [start_run(a, a / ".fa", pg_url, "host-a"), start_run(b, b / ".fa", pg_url, "host-b")]
    for proc in runs:
        _out, err = finish(proc)
        assert "waiting" not in err, err
    pg = PostgresStore(pg_url)
    stored = pg.runs()
    assert sorted(r["host"] for r in stored) == ["host-a", "host-b"]
    assert {r["service"] for r in stored} == {"shop"}
    local = {d: spool(d / ".fa") for d in (a, b)}
    run_ids = {d: local[d].latest_run() for d in (a, b)}
    # Every session of both hosts, exactly as each host's own (SQLite) spool holds it.
    for d in (a, b):
        assert sessions_of(pg, run_ids[d]) == sessions_of(local[d], run_ids[d])
        assert len(sessions_of(pg, run_ids[d])) == SESSIONS
    # The merged graph over the server equals the merge of the two SQLite stores.
    want = to_contract(merge_all(from_aggregates(local[d].aggregates(run_ids[d]))
                                 for d in (a, b)))
    got = json.loads(cli_out(["export", "--format", "json", "--store", pg_url,
                              "--run", run_ids[a], "--run", run_ids[b]], tmp_path))
    assert sorted(got.pop("runs")) == sorted(want.pop("runs"))
    assert got == want
    # The CLI lists the sessions of both hosts.
    listed = cli_out(["sessions", "--store", pg_url, "--run", run_ids[a]], tmp_path)
    assert "shop:checkout" in listed
    for d in (a, b):
        stats_pg = cli_out(["stats", "--store", pg_url, "--run", run_ids[d]], tmp_path)
        stats_local = cli_out(["stats", "--store", f"sqlite:///{d / '.fa' / 'pg-spool.db'}",
                               "--run", run_ids[d]], tmp_path)
        assert stats_pg == stats_local
    pg.close()


def test_server_restarted_in_the_middle_of_a_run_loses_nothing(
        pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.create_database()
    root = app(tmp_path / "app")
    gates = tmp_path / "gates"
    gates.mkdir()
    data = root / ".fa"
    proc = start_run(root, data, url, "host-a", {"FLEET_GATES": str(gates)})
    try:
        wait_until(lambda: (gates / "1").exists(), "the first phase", timeout=120)
        pg = PostgresStore(url)
        # Sessions reach the server while the run goes on.
        wait_until(lambda: pg.count_sessions() >= 12 + 7, "live forwarding", timeout=120)
        pg.close()
        pg_server.stop()
        (gates / "go-1").touch()
        wait_until(lambda: (gates / "2").exists(), "the second phase", timeout=120)
        # The sidecar records on: the second phase is in the spool, waiting for the server.
        wait_until(lambda: spool(data).count_sessions() >= 12 + 7 + 12 + 1, "the spool", timeout=120)
        wait_until(lambda: spool_waiting(data) > 0, "changes waiting", timeout=120)
    finally:
        if not pg_server.running:
            pg_server.start()
        (gates / "go-1").touch()
        (gates / "go-2").touch()
    _out, err = finish(proc)
    assert spool_waiting(data) == 0, err
    local = spool(data)
    run_id = local.latest_run()
    pg = PostgresStore(url)
    assert sessions_of(pg, run_id) == sessions_of(local, run_id)
    assert pg.count_sessions() == SESSIONS  # nothing lost, nothing twice
    assert pg.run(run_id)["status"] == "finished"
    pg.close()


def test_server_down_for_a_whole_run_is_forwarded_by_the_next(
        pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.create_database()
    root = app(tmp_path / "app")
    data = root / ".fa"
    pg_server.stop()
    try:
        _out, err = finish(start_run(root, data, url, "host-a"))
        assert "waiting" in err, err  # the summary says what has not reached the server
        assert spool_waiting(data) > 0
    finally:
        pg_server.start()
    _out, err = finish(start_run(root, data, url, "host-a"))
    assert spool_waiting(data) == 0, err
    local = spool(data)
    pg = PostgresStore(url)
    assert len(pg.runs()) == 2
    for r in local.runs():
        assert sessions_of(pg, r["run_id"]) == sessions_of(local, r["run_id"])
    assert pg.count_sessions() == 2 * SESSIONS
    pg.close()
