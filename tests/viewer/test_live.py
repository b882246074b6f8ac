"""A run that is still being recorded: the API reports it live, with counts from its sessions.

The store is written row by row while the app reads it, as the sidecar does during a run
(WAL mode: the reader sees each commit, and never blocks the writer).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from flowagent.store.api import db_path

from flowagent.store.sqlite import SQLiteStore
from flowagent_viewer import create_app

from viewer_data import LIVE_RUN as RUN
from viewer_data import add_live_session as add_session
from viewer_data import start_live_run as start_run

def test_live_run_updates_without_restart(tmp_path: Path) -> None:
    store = SQLiteStore(db_path(str(tmp_path)))
    start_run(store)
    client = create_app({"DATA_DIR": str(tmp_path)}).test_client()

    run = client.get(f"/api/runs/{RUN}").get_json()["run"]
    assert run["live"] is True and run["sessions"] == 0 and run["ended_ns"] is None
    assert re.search(r'"live": ?true', client.get(f"/?run={RUN}").get_data(as_text=True))

    add_session(store, 1)
    add_session(store, 2)
    add_session(store, 99, finished=False)
    run = client.get(f"/api/runs/{RUN}").get_json()["run"]
    assert run["sessions"] == 3 and run["calls"] == 6 and run["open_sessions"] == 1
    listing = client.get(f"/api/runs/{RUN}/sessions").get_json()
    assert listing["total"] == 3 and {s["result"] for s in listing["items"]} == {"success", None}
    graph = client.get(f"/api/runs/{RUN}/graph/view").get_json()
    assert [n["calls"] for n in graph["nodes"]] == [2] and graph["edges"] == []

    add_session(store, 3)  # the graph grows: the cached version must not be served
    graph = client.get(f"/api/runs/{RUN}/graph/view").get_json()
    assert {n["id"] for n in graph["nodes"]} == {"app:handle", "app:helper"}
    assert len(graph["edges"]) == 1 and graph["run"]["live"] is True
    stats = client.get(f"/api/runs/{RUN}/stats").get_json()
    assert stats["run"]["live"] is True and stats["function_count"] == 2

    with store.transaction() as db:
        db.execute("UPDATE runs SET status='finished', ended_ns=?, sessions=4, calls=8 "
                   "WHERE run_id=?", (time.time_ns(), RUN))
    run = client.get(f"/api/runs/{RUN}").get_json()["run"]
    assert run["live"] is False and run["sessions"] == 4
    store.close()


def test_pages_of_a_live_run_say_so(tmp_path: Path) -> None:
    store = SQLiteStore(db_path(str(tmp_path)))
    start_run(store)
    add_session(store, 1)
    client = create_app({"DATA_DIR": str(tmp_path), "POLL_MS": 500}).test_client()
    for path in (f"/?run={RUN}", f"/runs/{RUN}/graph", f"/runs/{RUN}/stats", "/sessions/live-1"):
        body = client.get(path).get_data(as_text=True)
        assert 'id="live-badge" class="badge live"' in body, path
        assert '"poll_ms": 500' in body or '"poll_ms":500' in body
    store.close()
