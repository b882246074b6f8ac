"""Where and how recordings are kept. This package's own namespace stays light: the launcher
reads :func:`db_path` before the program starts, without loading SQLite."""

import os


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, "flowagent.db")
