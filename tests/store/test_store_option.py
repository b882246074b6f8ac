"""``--store`` / ``FLOWAGENT_STORE`` / ``store =``: the store a run writes into and the CLI and
viewer read, wherever it is (here a SQLite file outside the data directory)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli

PROGRAM = "def work(n):\n    return n * 2\n\nfor i in range(3):\n    work(i)\n"


def test_run_and_read_through_a_store_url(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    db = tmp_path / "elsewhere" / "shared.db"
    url = f"sqlite:///{db}"
    data = tmp_path / "data"
    proc = run_cli(["run", "--data-dir", str(data), "--store", url, "prog.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert db.exists() and not (data / "flowagent.db").exists()
    runs = json.loads(run_cli(["runs", "--json", "--store", url], tmp_path).stdout)
    assert len(runs) == 1 and runs[0]["status"] == "finished"
    # the same store named by the environment, and by a config file
    env_runs = json.loads(run_cli(["runs", "--json"], tmp_path,
                                  env={"FLOWAGENT_STORE": str(db)}).stdout)
    assert [r["run_id"] for r in env_runs] == [runs[0]["run_id"]]
    (tmp_path / "flowagent.toml").write_text(f'store = "{url}"\n')
    sessions = run_cli(["sessions", "--json"], tmp_path)
    assert sessions.returncode == 0, sessions.stderr.decode()
    assert len(json.loads(sessions.stdout)) == 3
    stats = run_cli(["stats", "--json"], tmp_path)
    assert stats.returncode == 0, stats.stderr.decode()
    assert any(f["function"].endswith(":work") and f["calls"] == 3
               for f in json.loads(stats.stdout)["functions"])


def test_unknown_store_is_one_clear_error(tmp_path: Path) -> None:
    proc = run_cli(["runs", "--store", "mysql://db/x"], tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "unknown store" in err and "postgresql://" in err
