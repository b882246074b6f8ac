"""End to end in a real headless Chromium: record with ``flowagent run``, serve with
``flowagent view --port 0``, and click through the pages as a user would.

Needs Debian's ``chromium`` (``apt-get install chromium``) and Playwright for Python (``pip
install playwright``; its own browser download is not used). Screenshots are written to
``tests/artifacts/browser/``. Every page is loaded with the viewer's real Content Security
Policy, and any script error or alert dialog fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowagent.store.api import db_path
from flowagent.store.sqlite import SQLiteStore

from viewer_data import HOSTILE_FUNCTION, HOSTILE_SESSION, LIVE_RUN as RUN, REPO, XSS, XSS_IMG
from viewer_data import add_live_session as add_session
from viewer_data import serve
from viewer_data import start_live_run as start_run

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("FLOWAGENT_TEST_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
LARGE_TIMEOUT_MS = 120_000  # laying out hundreds of functions on a loaded 2-core machine

if CHROMIUM is None:
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("Playwright for Python is not installed (pip install playwright)",
                allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(artifacts: Path) -> Path:
    out = artifacts / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; script errors, CSP violations and dialogs fail the test."""
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type == "error" else None)
    pg.on("dialog", lambda d: (problems.append(f"dialog opened: {d.message}"), d.dismiss()))
    yield pg
    context.close()
    assert not problems, problems


@pytest.fixture(scope="module")
def demo_url(demo_dir: Path) -> Iterator[str]:
    with serve("--data-dir", str(demo_dir), "--port", "0") as (url, _):
        yield url.rstrip("/")


def graph_ready(pg: Page, timeout_ms: float = TIMEOUT_MS) -> None:
    pg.wait_for_function("() => window.FA && FA.graphReady === true", timeout=timeout_ms)


def click_node(pg: Page, node_id: str) -> None:
    """Click a Cytoscape node where it is drawn on the canvas."""
    pos = pg.evaluate("""(id) => { const n = FA.cy.getElementById(id);
        FA.cy.center(n); const p = n.renderedPosition();
        const r = document.getElementById('cy').getBoundingClientRect();
        return {x: r.left + p.x, y: r.top + p.y}; }""", node_id)
    pg.mouse.click(pos["x"], pos["y"])


def test_sessions_page_and_filter(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/")
    assert page.locator("#runs-table tbody tr").count() == 1
    assert page.locator("#sessions-body tr").count() == 22
    page.screenshot(path=str(shots / "sessions.png"), full_page=True)
    page.select_option("select[name=result]", "partial")
    page.click("form#filters button[type=submit]")
    page.wait_for_url("**result=partial**")
    results = page.locator("#sessions-body .res").all_inner_texts()
    assert results and all("partial" in r for r in results)
    assert "matching" in page.inner_text("#pager-info")
    page.screenshot(path=str(shots / "sessions-filtered.png"), full_page=True)


def test_session_call_graph_and_back(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/?order=calls")
    page.locator("#sessions-body tr").first.locator("a").click()
    page.wait_for_url("**/sessions/**")
    session_url = page.url
    first = page.locator("#tree [role=treeitem]").count()
    assert 20 < first <= 469  # the rows visible at first; the rest come from /tree on demand
    assert "__main__:main" in page.inner_text("h1")
    page.wait_for_function("() => document.getElementById('timeline-canvas').height > 0")
    page.screenshot(path=str(shots / "session.png"), full_page=True)

    # collapse and expand the root
    # Toggling waits for the tree's model (fetched after the page): expect() retries.
    visible = page.locator("#tree [role=treeitem]:not(.hidden)")
    visible_before = visible.count()
    page.locator("#r0 button.tg").click()
    expect(visible).to_have_count(1)
    page.locator("#r0 button.tg").click()
    expect(visible).to_have_count(visible_before)

    # select a call: its details, then its function in the architecture graph
    row = page.locator("#tree [role=treeitem]:not(.hidden)", has_text="shop.catalog:Catalog.get").first
    row.locator(".fn").click()
    expect(page.locator("#call-details h3")).to_have_text("shop.catalog:Catalog.get")
    details = page.inner_text("#call-details").lower()  # headings are upper-cased by CSS
    assert "duration" in details and "input" in details and "called by" in details
    page.screenshot(path=str(shots / "session-call-selected.png"))
    page.click("#to-graph")
    page.wait_for_url("**/graph?**focus=**")
    graph_ready(page)
    page.wait_for_function("() => document.getElementById('details-name') !== null")
    assert page.inner_text("#details-name") == "shop.catalog:Catalog.get"
    assert page.evaluate("() => FA.cy.getElementById('shop.catalog:Catalog.get').hasClass('sel')")
    details = page.inner_text("#details").lower()
    assert "callers" in details and "shop.catalog:catalog.find" in details
    assert "input shapes" in details and "output shapes" in details
    page.screenshot(path=str(shots / "graph-focused.png"))

    page.go_back()
    page.wait_for_url(session_url)
    assert page.locator("#tree [role=treeitem]").count() == first
    page.click("#expand-all")
    page.wait_for_function("() => document.querySelectorAll('#tree [role=treeitem]:not(.hidden)').length === 469")
    page.click("#collapse-all")
    assert page.locator("#tree [role=treeitem]:not(.hidden)").count() == 1
    page.click("#next-error")
    page.wait_for_function("() => document.querySelector('#tree .row.sel.r-error') !== null")
    assert page.inner_text("#call-details dd.exc")


def test_timeline_click_selects_the_call(page: Page, demo_url: str) -> None:
    page.goto(demo_url + "/?order=calls")
    page.locator("#sessions-body tr").first.locator("a").click()
    # Both loaded before the click: selecting a span selects its row in the tree, and the
    # tree arriving can move the canvas on the page.
    page.wait_for_function("() => document.getElementById('timeline-canvas').height > 0 && "
                           "window.FA && FA.treeLoaded === true")
    box = page.locator("#timeline-canvas").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 5, box["y"] + 26 + 8)  # the root span, first lane
    assert page.inner_text("#call-details h3") == "__main__:main"


def test_architecture_page_interactions(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/graph?level=function")
    graph_ready(page)
    counts = page.evaluate("() => [FA.cy.nodes('[w]').length, FA.cy.edges().length]")
    assert counts[0] == 68 and counts[1] > 60
    page.screenshot(path=str(shots / "graph.png"))

    click_node(page, "shop.inventory:stock_level")
    page.wait_for_function("() => document.getElementById('details-name') !== null")
    assert page.inner_text("#details-name") == "shop.inventory:stock_level"
    details = page.inner_text("#details").lower()
    assert "callers" in details and "callees" in details and "calls" in details
    assert "error" in details
    page.screenshot(path=str(shots / "graph-selected.png"))

    page.check("input[name=level][value=module]")
    page.wait_for_url("**level=module**")
    graph_ready(page)
    assert page.evaluate("() => FA.cy.nodes('[w]').length") == 11
    page.screenshot(path=str(shots / "graph-modules.png"))

    page.check("input[name=level][value=function]")
    page.wait_for_url("**level=function**")  # each change loads a page: one at a time
    graph_ready(page)
    page.check("input[name=errors]")
    page.wait_for_url("**errors=1**")
    page.wait_for_function("() => FA.graphReady === true && FA.cy.nodes('[w]').length < 68")
    assert 0 < page.evaluate("() => FA.cy.nodes('[w]').length") < 68
    assert page.evaluate("() => FA.cy.edges().every(e => e.hasClass('err') || e.hasClass('partial'))")
    page.screenshot(path=str(shots / "graph-errors.png"))

    page.uncheck("input[name=errors]")
    page.select_option("select[name=module]", "shop.cart")
    page.wait_for_url("**module=shop.cart**")
    # The previous graph stays ready until the filtered one has been fetched: wait for the
    # filtered graph itself (a filter that does not work times out here).
    page.wait_for_function("() => FA.graphReady === true && FA.cy.nodes('[w]').length > 0 && "
                           "FA.cy.nodes('[w]').every(n => n.id().startsWith('shop.cart:'))")


def test_stats_page(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/stats")
    assert page.locator("#functions-table tbody tr").count() == 50
    assert "KeyError" in page.inner_text("#hotspots-table")
    assert "Nothing lost" in page.inner_text("#data-loss")
    page.screenshot(path=str(shots / "stats.png"), full_page=True)
    page.click("a:text('self')")
    page.wait_for_url("**sort=self**")
    page.locator("#functions-table a").first.click()
    page.wait_for_url("**/graph?**")
    graph_ready(page)


@pytest.fixture(scope="module")
def planted_url(planted_dir: Path) -> Iterator[str]:
    with serve("--data-dir", str(planted_dir), "--port", "0") as (url, _):
        yield url.rstrip("/")


def test_stats_analysis_sections(page: Page, planted_url: str, shots: Path) -> None:
    page.goto(planted_url + "/stats")
    for sid in ("session-durations", "data-loss", "variants", "clusters", "profiles", "drift",
                "processes"):
        assert page.is_visible(f"#{sid}"), sid
    assert page.locator("#variants-table tbody tr").count() == 3
    assert page.is_visible("#variants-table svg.bar")
    assert "unhandled" in page.inner_text("#unhandled-clusters")
    assert "OutOfStock" in page.inner_text("#unhandled-clusters")
    assert "KeyError" in page.inner_text("#handled-clusters")
    assert "order.coupon" in page.inner_text("#drift-table")
    assert "9 sessions" in page.inner_text("#session-durations")
    assert "planted_app.py" in page.inner_text("#processes-table")
    page.screenshot(path=str(shots / "stats-analysis.png"), full_page=True)

    # a drift row's function opens the graph, whose panel shows merged shapes and drift
    page.locator("#drift-table a", has_text="__main__:handle").first.click()
    page.wait_for_url("**/graph?**")
    graph_ready(page)
    click_node(page, "__main__:handle")
    page.wait_for_function("() => document.getElementById('details-merged') !== null")
    assert "dict{coupon?:str,qty:int,sku:str}" in page.inner_text("#details-merged")
    assert "order.coupon" in page.inner_text("#details-drift")
    assert "p50 / p95 / p99" in page.inner_text("#details")
    page.screenshot(path=str(shots / "graph-function-shapes.png"))


def test_hostile_names_stay_text(page: Page, hostile_dir: Path, shots: Path) -> None:
    with serve("--data-dir", str(hostile_dir), "--port", "0") as (url, _):
        base = url.rstrip("/")
        page.goto(f"{base}/sessions/{HOSTILE_SESSION}")
        assert XSS in page.inner_text("#tree")
        page.locator("#tree .row .fn").first.click()
        assert page.inner_text("#call-details h3") == HOSTILE_FUNCTION
        page.screenshot(path=str(shots / "hostile-session.png"))
        runs = page.evaluate("async () => (await (await fetch('/api/runs')).json()).runs")
        for run in runs:
            page.goto(f"{base}/runs/{run['run_id']}/graph")
            graph_ready(page)
            page.evaluate("() => FA.cy.nodes('[w]').length > 0")
            node = page.evaluate("() => FA.cy.nodes('[w]')[0].id()")
            click_node(page, node)
            page.wait_for_function("() => document.getElementById('details-name') !== null")
            page.goto(f"{base}/runs/{run['run_id']}/stats")
            page.goto(f"{base}/?run={run['run_id']}")
        assert XSS_IMG in page.inner_text("body") or XSS in page.inner_text("body")
        page.screenshot(path=str(shots / "hostile-sessions.png"))
        assert page.evaluate("() => document.querySelectorAll('img').length") == 0


def _bench_module() -> Any:
    path = REPO / "benchmarks" / "viewer_bench.py"
    spec = importlib.util.spec_from_file_location("viewer_bench", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_large_program_is_readable(page: Page, tmp_path: Path, shots: Path) -> None:
    """350 functions: the page opens at module level; function level has no overlaps."""
    ids = _bench_module().build_store(str(tmp_path), sessions=3000, big_session=3000)
    page.set_default_timeout(LARGE_TIMEOUT_MS)  # big pages on a loaded machine
    with serve("--data-dir", str(tmp_path), "--port", "0") as (url, _):
        base = url.rstrip("/")
        page.goto(f"{base}/runs/{ids['run_id']}/graph")
        graph_ready(page, LARGE_TIMEOUT_MS)
        assert not page.is_checked("input[name=level][value=function]")
        page.screenshot(path=str(shots / "large-modules.png"))
        page.check("input[name=level][value=function]")
        page.wait_for_url("**level=function**")
        graph_ready(page, LARGE_TIMEOUT_MS)
        n = page.evaluate("() => FA.cy.nodes('[w]').length")
        assert n > 250
        page.screenshot(path=str(shots / "large-functions.png"))
        # Not a hairball: no two functions drawn on top of each other, and no two sibling
        # boxes (modules of one layout level) overlapping.
        overlaps = page.evaluate("""() => {
            const boxes = (eles) => eles.map(e => [e.id(), e.boundingBox({includeLabels: false})]);
            const hit = (a, b) => a.x1 < b.x2 - 1 && b.x1 < a.x2 - 1 && a.y1 < b.y2 - 1 && b.y1 < a.y2 - 1;
            const count = (list) => { let c = 0; for (let i = 0; i < list.length; i++)
                for (let j = i + 1; j < list.length; j++) if (hit(list[i][1], list[j][1])) c++; return c; };
            const top = FA.cy.nodes('.box').filter(n => n.parent().empty());
            return [count(boxes(FA.cy.nodes('[w]'))), count(boxes(top))]; }""")
        assert overlaps == [0, 0]
        page.click("#fit")

        page.goto(f"{base}/sessions/{ids['big_session']}")
        # the root and the first 100 of its 520 children (a loop) are in the page at first
        shallow = page.locator("#tree [role=treeitem]").count()
        assert shallow == 1 + 100
        assert "421 more calls" in page.inner_text("#tree .row.more")
        page.click("#tree .row.more button")
        page.wait_for_function(
            "() => document.querySelectorAll('#tree [role=treeitem]').length === 522")
        assert page.locator("#tree .row.more").count() == 0
        page.click("#expand-all")
        page.wait_for_function(
            "() => document.querySelectorAll('#tree [role=treeitem]:not(.hidden)').length === 3000")
        # expanding one collapsed loop iteration creates its four calls
        page.goto(f"{base}/sessions/{ids['big_session']}")
        page.locator("#r1 button.tg").click()
        page.wait_for_function(f"() => document.querySelectorAll('#tree [role=treeitem]').length === {shallow + 4}")
        assert page.locator("#r2").is_visible() and page.inner_text("#r1 button.tg") == "▾"
        page.screenshot(path=str(shots / "large-session.png"))


def test_live_run_updates_without_reload(page: Page, tmp_path: Path, shots: Path) -> None:
    store = SQLiteStore(db_path(str(tmp_path)))
    start_run(store)
    add_session(store, 1)
    with serve("--data-dir", str(tmp_path), "--port", "0") as (url, _):
        base = url.rstrip("/")
        page.goto(f"{base}/?run={RUN}")
        assert page.locator("#sessions-body tr").count() == 1
        assert page.is_visible("#live-badge")
        page.evaluate("() => { window.__sameDocument = true; }")
        add_session(store, 2)
        add_session(store, 3)
        page.wait_for_function(
            "() => document.querySelectorAll('#sessions-body tr').length === 3", timeout=15_000)
        assert page.evaluate("() => window.__sameDocument") is True
        assert "3" in page.inner_text('#runs-table [data-k="sessions"]')
        page.screenshot(path=str(shots / "live-sessions.png"))

        page.goto(f"{base}/runs/{RUN}/graph")
        graph_ready(page)
        assert page.evaluate("() => FA.cy.nodes('[w]').length") == 2
        page.evaluate("() => { window.__sameDocument = true; }")
        add_session(store, 4)
        with store.transaction() as db:  # a function seen for the first time, mid-run
            db.execute("INSERT INTO functions(run_id, fid, name, module, qualname, kind, params) "
                       "VALUES(?,3,'app:late','app','late','function','[]')", (RUN,))
            db.execute("INSERT INTO graph_nodes(run_id, fid, calls, errors, partials, total_ns, "
                       "self_ns, min_ns, max_ns, roots) VALUES(?,3,1,0,0,1,1,1,1,0)", (RUN,))
            db.execute("INSERT INTO graph_edges(run_id, caller_fid, callee_fid, result, count, "
                       "total_ns) VALUES(?,2,3,0,1,1)", (RUN,))
        page.wait_for_function("() => FA.cy.nodes('[w]').length === 3", timeout=15_000)
        graph_ready(page)
        assert page.evaluate("() => window.__sameDocument") is True

        page.goto(f"{base}/runs/{RUN}/stats")
        assert page.inner_text('#run-facts [data-k="sessions"]') == "4"
        page.evaluate("() => { window.__sameDocument = true; }")
        add_session(store, 5)
        page.wait_for_function(
            "() => document.querySelector('#run-facts [data-k=\"sessions\"]').textContent === '5'",
            timeout=15_000)
        assert page.evaluate("() => window.__sameDocument") is True

        with store.transaction() as db:
            db.execute("UPDATE runs SET status='finished', ended_ns=? WHERE run_id=?",
                       (time.time_ns(), RUN))
        page.wait_for_function(
            "() => document.getElementById('live-badge').classList.contains('hidden')",
            timeout=15_000)
    store.close()
