"""The bootstrap is a good guest: it chains the user's own sitecustomize, stays out of other
interpreters, and `-- python script.py` records the script like `flowagent run script.py`."""

from __future__ import annotations

import os
import sys

import pytest

from helpers import REPO, record, run_cli

pytestmark = pytest.mark.e2e


def test_user_sitecustomize_still_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITE_RAN = True\n")
    rec = record("""
        import builtins
        def f():
            return getattr(builtins, "USER_SITE_RAN", False)
        print(f())
    """, tmp_path, env={"PYTHONPATH": f"{REPO}{os.pathsep}{site}"})
    assert rec.stdout == "True\n"
    assert rec.function_names() == {"__main__:f"}


def test_dash_dash_python_script_records_main(tmp_path):
    (tmp_path / "app.py").write_text("def f():\n    return 2\nprint(f())\n")
    data = tmp_path / "d"
    python = os.path.basename(sys.executable)
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = run_cli(["run", "--data-dir", str(data), "--", python, "app.py"], tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout == b"2\n", proc.stderr

    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(data / "flowagent.db"), readonly=True)
    assert [s["name"] for s in store.sessions()] == ["__main__:f"]
