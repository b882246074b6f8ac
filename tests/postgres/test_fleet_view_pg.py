"""The fleet page over a shared PostgreSQL store: each host's spool reports what it still holds
for the server, and the page shows it per host (and zero once forwarded)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytest.importorskip("psycopg")

from flowagent.store import spool  # noqa: E402
from flowagent.store.postgres import PostgresStore, SpoolStore  # noqa: E402
from flowagent_viewer import create_app  # noqa: E402


def host_row(html: str, host: str) -> str:
    return html.split(f'<tr data-host="{host}">', 1)[1].split("</tr>", 1)[0]


def test_fleet_page_shows_each_hosts_spool_backlog(pg_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWAGENT_HOST", "host-a")
    writer = SpoolStore(pg_url, str(tmp_path / "a"), forward=False)
    try:
        for i in range(5):
            writer.create_run(f"r{i}", time.time_ns(), "shop", "host-a")
        waiting = writer.waiting()
        assert waiting >= 5
        monkeypatch.setattr(spool, "BATCH", 2)  # forward a part only: the rest waits
        assert writer.forwarder.forward_once() == 2
        server = PostgresStore(pg_url)
        try:
            [backlog] = server.spool_backlog()
            assert (backlog.host, backlog.waiting) == ("host-a", waiting - 2)
        finally:
            server.close()
        client = create_app({"DATA_DIR": str(tmp_path / "viewer"), "STORE": pg_url,
                             "TESTING": True}).test_client()
        row = host_row(client.get("/fleet").get_data(as_text=True), "host-a")
        assert re.search(r'data-k="spool"><span title="as of [^"]+">' + str(waiting - 2) + "<",
                         row)
        assert 'data-k="runs">2<' in row  # the runs the server has so far (a change each)
        assert writer.forwarder.drain(60) == 0
        row = host_row(client.get("/fleet").get_data(as_text=True), "host-a")
        assert re.search(r'data-k="spool"><span title="[^"]+">0<', row)
        assert 'data-k="runs">5<' in row
    finally:
        writer.close()
