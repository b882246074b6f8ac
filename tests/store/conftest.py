"""The store's own suite: every test here runs against each store implementation.

``store_url`` names a fresh, empty store; ``open_store(store_url)`` (writable) and
``open_store(store_url, readonly=True)`` open it. SQLite is always there; other stores add
their parameter here.

PostgreSQL: a real server per test process (tests/pgserver.py), a new database per test; the
writer spools in the test's directory and reads its own writes back from the server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgserver import pg_server  # noqa: F401  (fixture)

STORES = ("sqlite", "postgresql")


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'flowagent.db'}"
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        monkeypatch.setenv("FLOWAGENT_SPOOL_DIR", str(tmp_path / "spool"))
        return server.create_database()
    raise AssertionError(request.param)
