"""Bad or unreachable PostgreSQL stores: one clear line, exit status 2, no password shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli
from pgserver import free_port

pytest.importorskip("psycopg")


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql://flowagent:s3cret@127.0.0.1:{free_port()}/nothing"
    for command in (["sessions"], ["runs"], ["export", "--format", "json"]):
        proc = run_cli([*command, "--store", url], tmp_path, timeout=60)
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert "cannot connect to the PostgreSQL store" in err
        assert "s3cret" not in err and "flowagent:***@127.0.0.1" in err
