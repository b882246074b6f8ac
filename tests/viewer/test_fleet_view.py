"""The fleet page and the service / host filters of the viewer, over runs recorded by the real
``flowagent run`` as two services on three hosts: Flask's test client for the pages' content,
headless Chromium for what a user clicks."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from flowagent.store.api import db_path
from flowagent.store.sqlite import SQLiteStore
from flowagent_viewer import create_app
from viewer_data import clean_env, serve

APP = '''
def handle(i):
    return {"i": i}

for i in range(3):
    handle(i)
'''

# (service, host) of each recorded run, in order
RUNS = [("shop", "host-a"), ("shop", "host-b"), ("shop", "host-a"), ("mail", "host-c")]


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    (root / "app.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    data = root / "data"
    for service, host in RUNS:
        env = dict(clean_env(), FLOWAGENT_SERVICE=service, FLOWAGENT_HOST=host)
        proc = subprocess.run([sys.executable, "-m", "flowagent", "run", "--data-dir",
                               str(data), "app.py"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    return data


@pytest.fixture(scope="module")
def run_ids(fleet_dir: Path) -> dict[tuple[str, str], list[str]]:
    store = SQLiteStore(db_path(str(fleet_dir)), readonly=True)
    try:
        out: dict[tuple[str, str], list[str]] = {}
        for r in store.runs():
            out.setdefault((r["service"], r["host"]), []).append(r["run_id"])
        return out
    finally:
        store.close()


@pytest.fixture
def fleet_client(fleet_dir: Path) -> FlaskClient:
    return create_app({"DATA_DIR": str(fleet_dir)}).test_client()


def runs_listed(html: str) -> set[str]:
    table = html.split('id="runs-table"', 1)[1].split("</table>", 1)[0]
    return set(re.findall(r'data-run="([^"]+)"', table))


def test_fleet_page_lists_services_hosts_and_runs(fleet_client: FlaskClient,
                                                   run_ids: dict) -> None:
    resp = fleet_client.get("/fleet")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    blocks = dict(re.findall(r'<div class="service" data-service="([^"]*)">(.*?)</table>',
                             html, re.S))
    assert sorted(blocks) == ["mail", "shop"]
    shop_hosts = re.findall(r'<tr data-host="([^"]+)">', blocks["shop"])
    assert shop_hosts == ["host-a", "host-b"]
    assert re.findall(r'<tr data-host="([^"]+)">', blocks["mail"]) == ["host-c"]
    # every run under its own service and host, with its counts
    for (service, host), ids in run_ids.items():
        row = blocks[service].split(f'<tr data-host="{host}">', 1)[1].split("</tr>", 1)[0]
        assert re.search(r'data-k="runs">\s*' + str(len(ids)) + r"\s*<", row)
        for run_id in ids:
            assert f'data-run="{run_id}"' in row
        assert 'data-k="live">0<' in row and 'data-k="open">0<' in row
        assert 'data-k="spool">–<' in row  # SQLite: written directly, no spool
    # filtered to one service
    only = fleet_client.get("/fleet?service=mail").get_data(as_text=True)
    assert 'data-service="mail"' in only and 'data-service="shop"' not in only
    none = fleet_client.get("/fleet?service=nosuch").get_data(as_text=True)
    assert "No runs match these filters" in none


def test_sessions_page_filters_runs_by_service_and_host(fleet_client: FlaskClient,
                                                        run_ids: dict) -> None:
    html = fleet_client.get("/").get_data(as_text=True)
    assert runs_listed(html) == {r for ids in run_ids.values() for r in ids}
    html = fleet_client.get("/?service=shop&host=host-a").get_data(as_text=True)
    assert runs_listed(html) == set(run_ids[("shop", "host-a")])
    # the run shown is one of those, and paging/filter forms keep the service and host
    assert '<input type="hidden" name="service" value="shop">' in html
    assert '<input type="hidden" name="host" value="host-a">' in html
    html = fleet_client.get("/?service=shop").get_data(as_text=True)
    assert runs_listed(html) == set(run_ids[("shop", "host-a")] + run_ids[("shop", "host-b")])
    html = fleet_client.get("/?host=nowhere").get_data(as_text=True)
    assert 'id="no-runs"' in html and runs_listed(html) == set()


CHROMIUM = os.environ.get("FLOWAGENT_TEST_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or importlib.util.find_spec("playwright") is None,
    reason="needs Chromium (apt-get install chromium) and Playwright for Python")


@pytest.fixture(scope="module")
def fleet_url(fleet_dir: Path) -> Iterator[str]:
    with serve("--data-dir", str(fleet_dir), "--port", "0") as (url, _):
        yield url.rstrip("/")


@needs_browser
@pytest.mark.browser
def test_fleet_page_in_chromium(fleet_url: str, run_ids: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"])
        try:
            pg = browser.new_page()
            pg.set_default_timeout(30_000)
            pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            pg.on("console", lambda m: problems.append(f"console: {m.text}")
                  if m.type == "error" else None)
            pg.goto(fleet_url + "/")
            pg.click("header nav >> text=Fleet")
            expect(pg.locator("div.service")).to_have_count(2)
            # narrow to one service with the form, as a user would
            pg.select_option("#fleet-filters select[name=service]", "shop")
            pg.click("#fleet-filters button")
            expect(pg.locator("div.service")).to_have_count(1)
            expect(pg.locator("tr[data-host]")).to_have_count(2)
            # a host's link opens the runs of that service on that host
            pg.click("tr[data-host='host-b'] td >> nth=0 >> a")
            pg.wait_for_url(re.compile(r"service=shop.*host=host-b|host=host-b.*service=shop"))
            expect(pg.locator("#runs-table tbody tr")).to_have_count(1)
            listed = pg.locator("#runs-table tbody tr").get_attribute("data-run")
            assert [listed] == run_ids[("shop", "host-b")]
            expect(pg.locator("#fleet-filters select[name=host]")).to_have_value("host-b")
        finally:
            browser.close()
    assert not problems, problems
