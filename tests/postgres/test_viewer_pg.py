"""The viewer over a PostgreSQL store answers exactly as over the SQLite store of the same run
(the recording host's spool), page by page and API call by API call."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_fleet_e2e import app, finish, start_run

pytest.importorskip("psycopg")

from flowagent_viewer import create_app  # noqa: E402

pytestmark = pytest.mark.e2e


def test_viewer_over_postgresql_equals_sqlite(pg_url: str, tmp_path: Path) -> None:
    root = app(tmp_path / "app")
    finish(start_run(root, root / ".fa", pg_url, "host-a"))
    spool = root / ".fa" / "pg-spool.db"
    clients = {kind: create_app({"DATA_DIR": str(root / ".fa"), "STORE": store,
                                 "TESTING": True}).test_client()
               for kind, store in (("pg", pg_url), ("sqlite", str(spool)))}

    def both(path: str) -> tuple:
        answers = []
        for kind, client in clients.items():
            r = client.get(path, follow_redirects=True)
            assert r.status_code == 200, (kind, path, r.status_code, r.data[:500])
            answers.append(r.get_json() if r.is_json else r.data)
        return tuple(answers)

    runs_pg, runs_lite = both("/api/runs")
    assert runs_pg == runs_lite
    run_id = runs_pg["runs"][0]["run_id"]
    for path in (f"/api/runs/{run_id}", f"/api/runs/{run_id}/sessions",
                 f"/api/runs/{run_id}/roots", f"/api/runs/{run_id}/graph",
                 f"/api/runs/{run_id}/flows", f"/api/runs/{run_id}/stats"):
        pg, lite = both(path)
        assert pg == lite, path
    sessions, _ = both(f"/api/runs/{run_id}/sessions")
    listed = sessions["items"]
    session_id = listed[0]["session_id"]
    for path in (f"/api/sessions/{session_id}", f"/api/sessions/{session_id}/tree",
                 f"/api/sessions/{session_id}/timeline"):
        pg, lite = both(path)
        assert pg == lite, path
    # The HTML pages render from the server too.
    for path in ("/", f"/?run={run_id}", f"/sessions/{session_id}", "/graph",
                 f"/runs/{run_id}/stats"):
        pg, _lite = both(path)
        assert b"shop" in pg, path
