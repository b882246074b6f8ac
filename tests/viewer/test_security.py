"""Safety: hostile names are shown as text, ids never reach the file system, tokens are checked.

The hostile store holds a real recording (an exception class named ``<img src=x onerror=...>``,
dict keys that are markup) and a run whose function, module, session, thread, shape and
command names are all ``<script>`` payloads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from flowagent_viewer import create_app

from viewer_data import (HOSTILE_FUNCTION, HOSTILE_RUN, HOSTILE_SESSION,
                         HOSTILE_SESSION_NOT_KEPT, XSS, XSS_CLOSE, XSS_IMG)

RAW = (XSS, XSS_IMG, XSS_CLOSE, "<script", "onerror=alert")


def assert_escaped(html: str) -> None:
    """No payload survives as markup; only our own script tags (with a src) exist."""
    for payload in (XSS, XSS_IMG, XSS_CLOSE):
        assert payload not in html
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert all('src="/static/' in s or 'type="application/json"' in s for s in scripts), scripts
    assert "<img" not in html
    # the JSON data block cannot be closed early by data
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        json.loads(block)
        assert "<" not in block


def hostile_pages(client: FlaskClient) -> list[str]:
    recorded = client.get("/api/runs").get_json()["runs"]
    real = next(r["run_id"] for r in recorded if r["run_id"] != HOSTILE_RUN)
    real_session = client.get(f"/api/runs/{real}/sessions").get_json()["items"][0]["session_id"]
    paths = []
    for run, session in ((HOSTILE_RUN, HOSTILE_SESSION), (real, real_session)):
        paths += [f"/?run={run}", f"/sessions/{session}", f"/runs/{run}/graph",
                  f"/runs/{run}/graph?level=class", f"/runs/{run}/graph?level=module",
                  f"/runs/{run}/graph?level=package", f"/runs/{run}/stats",
                  f"/runs/{run}/graph?focus={quote(XSS)}", f"/?run={run}&root={quote(XSS)}",
                  f"/?run={run}&q={quote(XSS_CLOSE)}"]
    return paths


def test_hostile_names_are_escaped_in_every_page(hostile_client: FlaskClient) -> None:
    for path in hostile_pages(hostile_client):
        r = hostile_client.get(path)
        assert r.status_code == 200, path
        assert_escaped(r.get_data(as_text=True))


def test_hostile_names_show_as_text(hostile_client: FlaskClient) -> None:
    session = hostile_client.get(f"/sessions/{HOSTILE_SESSION}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in session
    assert "&lt;img src=x onerror=alert(1)&gt;" in session
    recorded = hostile_client.get("/api/runs").get_json()["runs"]
    real = next(r["run_id"] for r in recorded if r["run_id"] != HOSTILE_RUN)
    sid = hostile_client.get(f"/api/runs/{real}/sessions?result=partial").get_json()["items"][0]
    real_page = hostile_client.get(f"/sessions/{sid['session_id']}").get_data(as_text=True)
    assert "__main__.&lt;img src=x onerror=alert(1)&gt;" in real_page  # the exception type
    stats = hostile_client.get(f"/runs/{real}/stats").get_data(as_text=True)
    assert "__main__.&lt;img src=x onerror=alert(1)&gt;" in stats


def test_session_without_kept_tree(hostile_client: FlaskClient) -> None:
    page = hostile_client.get(f"/sessions/{HOSTILE_SESSION_NOT_KEPT}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'id="no-tree"' in body
    assert_escaped(body)
    api = hostile_client.get(f"/api/sessions/{HOSTILE_SESSION_NOT_KEPT}").get_json()
    assert api["graph"]["nodes"] == []
    timeline = hostile_client.get(f"/api/sessions/{HOSTILE_SESSION_NOT_KEPT}/timeline")
    assert timeline.get_json()["tracks"] == []


def test_hostile_names_in_error_messages_are_escaped(hostile_client: FlaskClient) -> None:
    for path in (f"/sessions/{quote(XSS)}", f"/runs/{quote(XSS_IMG)}/graph"):
        r = hostile_client.get(path)
        assert r.status_code == 404
        assert_escaped(r.get_data(as_text=True))


def test_hostile_json_is_valid_and_exact(hostile_client: FlaskClient) -> None:
    graph = hostile_client.get(f"/api/runs/{HOSTILE_RUN}/graph").get_json()
    assert HOSTILE_FUNCTION in {n["id"] for n in graph["nodes"]}
    session = hostile_client.get(f"/api/sessions/{HOSTILE_SESSION}").get_json()
    nodes = session["graph"]["nodes"]
    assert nodes[0]["function_name"] == HOSTILE_FUNCTION
    assert nodes[0]["input_shape"] == {"self": XSS_IMG, XSS: f"dict{{{XSS}:int}}"}
    assert nodes[1]["exception_type"] == f"evil.{XSS_IMG}"
    for path in (f"/api/runs/{HOSTILE_RUN}/graph/view?level=class",
                 f"/api/runs/{HOSTILE_RUN}/stats", f"/api/sessions/{HOSTILE_SESSION}/tree",
                 f"/api/sessions/{HOSTILE_SESSION}/timeline", f"/api/runs/{HOSTILE_RUN}/roots",
                 f"/api/runs/{HOSTILE_RUN}/function?name={quote(HOSTILE_FUNCTION)}"):
        r = hostile_client.get(path)
        assert r.status_code == 200 and r.mimetype == "application/json", path
        json.loads(r.get_data(as_text=True))


def test_hostile_exports_download(hostile_client: FlaskClient) -> None:
    for fmt in ("json", "dot", "mermaid", "chrome"):
        r = hostile_client.get(f"/export/sessions/{HOSTILE_SESSION}?format={fmt}")
        assert r.status_code == 200
        assert r.headers["Content-Disposition"].startswith('attachment; filename="session-evilpk-1')
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_security_headers(client: FlaskClient) -> None:
    r = client.get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"


# -- no request parameter reaches the file system ----------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/sessions/..%2F..%2Fetc%2Fpasswd", "/sessions/..%2F..%2Fetc%2Fpasswd",
    "/export/sessions/..%2F..%2Fetc%2Fpasswd?format=json", "/static/..%2Fflowagent.db",
    "/static/../../flowagent/store/sqlite.py", "/static/%2e%2e/__init__.py",
    "/api/runs/..%2F..%2F/graph", "/export/runs/..%2F..?format=dot",
])
def test_path_traversal_is_rejected(client: FlaskClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, path
    body = r.get_data(as_text=True)
    assert "root:" not in body and "SQLite format" not in body and "import" not in body


@pytest.mark.parametrize("fmt", ["../../x", "/etc/passwd", "json/../../x", "", "JSON", "dot%00"])
def test_export_format_must_be_known(client: FlaskClient, demo: dict, fmt: str) -> None:
    for path in (f"/export/sessions/{demo['big']}", f"/export/runs/{demo['run_id']}",
                 "/export/merged"):
        r = client.get(f"{path}?format={quote(fmt)}")
        if fmt == "":
            assert r.status_code == 200  # the default format: json
        else:
            assert r.status_code == 404, (path, fmt)


def test_export_of_unknown_run_in_merge_is_404(client: FlaskClient) -> None:
    assert client.get("/export/merged?format=json&run=../../etc").status_code == 404


# -- token and host checks ------------------------------------------------------------------

@pytest.fixture
def token_client(demo_dir: Path) -> FlaskClient:
    return create_app({"DATA_DIR": str(demo_dir), "TOKEN": "s3cret-t0ken"}).test_client()


@pytest.mark.parametrize("path", ["/", "/health", "/api/runs", "/static/style.css",
                                  "/export/merged?format=json", "/sessions/x", "/nope"])
def test_token_required_everywhere(token_client: FlaskClient, path: str) -> None:
    r = token_client.get(path)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = token_client.get(path, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_token_query_sets_cookie(token_client: FlaskClient) -> None:
    r = token_client.get("/?token=s3cret-t0ken")
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert "flowagent_token=s3cret-t0ken" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert token_client.get("/api/runs").status_code == 200  # the cookie now authenticates
    assert token_client.get("/?token=bad").status_code == 401  # a wrong token is not ignored


def test_token_bearer_header(token_client: FlaskClient) -> None:
    r = token_client.get("/api/runs", headers={"Authorization": "Bearer s3cret-t0ken"})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    assert token_client.get("/health", headers={"Authorization": "Bearer s3cret-t0ken"}
                            ).get_json()["status"] == "ok"


def test_token_error_is_json_under_api(token_client: FlaskClient) -> None:
    r = token_client.get("/api/runs")
    assert r.mimetype == "application/json" and r.get_json()["status"] == 401


def test_foreign_host_names_are_refused_without_token(client: FlaskClient) -> None:
    # A DNS name rebound to 127.0.0.1 must not let another site read the viewer.
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 403
    for host in ("localhost:8765", "127.0.0.1:8765", "[::1]:8765", "localhost"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_extend_loopback(demo_dir: Path) -> None:
    c = create_app({"DATA_DIR": str(demo_dir), "ALLOWED_HOSTS": ["viewer.internal"]}).test_client()
    assert c.get("/health", headers={"Host": "viewer.internal:80"}).status_code == 200
