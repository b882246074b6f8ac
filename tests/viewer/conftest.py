"""Viewer fixtures: real recordings made once per test session, and Flask apps over them.

* ``demo_dir``: the demo shop recorded by the real ``flowagent run`` (subprocess).
* ``hostile_dir``: a tiny program whose exception type and dict keys are markup, recorded the
  same way, plus one run written directly into the store whose function, session, thread and
  shape names are all hostile (a program cannot name a function ``<script>``, a corrupt or
  foreign store can).
* ``planted_dir``: a small program with planted facts (flow variants, a handled and an
  unhandled error, a dict argument that gains a field), recorded the same way.
* ``app`` / ``client``: ``create_app({"DATA_DIR": demo_dir})`` and its test client, as in
  Flask's own tutorial; ``hostile_client`` reads ``hostile_dir``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flowagent_viewer import create_app
from viewer_data import ARTIFACTS, COMPARE_APP, FLOW_APP, HOSTILE_APP, PLANTED_APP, add_hostile_run, flowagent, \
    record_demo


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("demo-data")
    record_demo(data)
    return data


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "hostile_app.py").write_text(textwrap.dedent(HOSTILE_APP), encoding="utf-8")
    data = root / "data"
    flowagent("run", "--data-dir", str(data), "hostile_app.py", cwd=root)
    add_hostile_run(data)
    return data


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``PLANTED_APP`` recorded with the real ``flowagent run``."""
    root = tmp_path_factory.mktemp("planted")
    (root / "planted_app.py").write_text(textwrap.dedent(PLANTED_APP), encoding="utf-8")
    data = root / "data"
    flowagent("run", "--data-dir", str(data), "planted_app.py", cwd=root)
    return data


@pytest.fixture(scope="session")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``FLOW_APP`` recorded with the real ``flowagent run``."""
    root = tmp_path_factory.mktemp("flow")
    (root / "flow_app.py").write_text(textwrap.dedent(FLOW_APP), encoding="utf-8")
    data = root / "data"
    flowagent("run", "--data-dir", str(data), "flow_app.py", cwd=root)
    return data


@pytest.fixture(scope="session")
def compare_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``COMPARE_APP`` recorded twice into one store: run A (v1), then run B (v2)."""
    root = tmp_path_factory.mktemp("compare")
    (root / "compare_app.py").write_text(textwrap.dedent(COMPARE_APP), encoding="utf-8")
    data = root / "data"
    flowagent("run", "--data-dir", str(data), "compare_app.py", "v1", cwd=root)
    flowagent("run", "--data-dir", str(data), "compare_app.py", "v2", cwd=root)
    return data


@pytest.fixture
def flow_client(flow_dir: Path) -> FlaskClient:
    return create_app({"DATA_DIR": str(flow_dir)}).test_client()


@pytest.fixture
def planted_client(planted_dir: Path) -> FlaskClient:
    return create_app({"DATA_DIR": str(planted_dir)}).test_client()


@pytest.fixture
def app(demo_dir: Path) -> Flask:
    return create_app({"DATA_DIR": str(demo_dir)})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def hostile_client(hostile_dir: Path) -> FlaskClient:
    return create_app({"DATA_DIR": str(hostile_dir)}).test_client()


@pytest.fixture
def demo(client: FlaskClient) -> dict[str, Any]:
    """Ids in the demo recording: the run, its biggest session, one error session."""
    run = client.get("/api/runs").get_json()["runs"][0]
    by_calls = client.get(f"/api/runs/{run['run_id']}/sessions?order=calls&per_page=200")
    items = by_calls.get_json()["items"]
    errors = [s for s in items if s["errors"]]
    return {"run_id": run["run_id"], "big": items[0]["session_id"],
            "error": errors[0]["session_id"], "sessions": items}


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS
