"""Where a run's store is: the URL given (``--store`` / ``store =`` / FLOWAGENT_STORE), else
the SQLite file of the data directory.

Standard library only and nothing else of flowagent: the launcher names the store to the
sidecar it starts without loading the store interface (:mod:`flowagent.store.api`, which
re-exports these).
"""

from __future__ import annotations

import os

DB_NAME = "flowagent.db"


def db_path(data_dir: str) -> str:
    """The SQLite store of a data directory."""
    return os.path.join(data_dir, DB_NAME)


def store_url(data_dir: str, store: str | None = None) -> str:
    """The store a command uses: ``store`` (``--store`` / ``store =`` / FLOWAGENT_STORE) when
    given, else the SQLite file of the data directory."""
    return store if store else db_path(data_dir)
