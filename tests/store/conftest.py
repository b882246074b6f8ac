"""The store's own suite: every test here runs against each store implementation.

``store_url`` names a fresh, empty store; ``open_store(store_url)`` (writable) and
``open_store(store_url, readonly=True)`` open it. SQLite is always there; other stores add
their parameter here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

STORES = ("sqlite",)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'flowagent.db'}"
    raise AssertionError(request.param)
