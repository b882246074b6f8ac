"""The views a person reads, in real headless Chromium: readable at first paint (no visible
label below 11 px, no two labels overlapping), on a small recorded program (the demo shop)
and a large one (1 000 functions); selecting and hovering show a node's neighbours and paths;
boxes open in place. Screenshots go to ``tests/artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from test_browser import CHROMIUM, LARGE_TIMEOUT_MS, _bench_module, browser, click_node, demo_url, graph_ready, \
    page, planted_url, shots  # noqa: F401 (fixtures)
from viewer_data import serve

from browser_checks import check_labels, dom_labels, graph_labels

pytestmark = pytest.mark.browser
assert CHROMIUM

from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def large_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    """A recorded-like store of 1 000 functions in 30 modules (the viewer benchmark's)."""
    data = tmp_path_factory.mktemp("large-views")
    ids = _bench_module().build_store(str(data), sessions=2000, big_session=500, functions=1000)
    with serve("--data-dir", str(data), "--port", "0") as (url, _):
        yield url.rstrip("/"), ids


def _run_id(page: Page, base: str) -> str:
    return page.evaluate("async () => (await (await fetch('/api/runs')).json()).runs[0].run_id") \
        if page.url.startswith(base) else ""


def _entries_first(page: Page) -> None:
    """Entry points nobody calls sit in the first column (row when laid out downwards)."""
    where = page.evaluate("""() => {
        const axis = FA.direction() === "LR" ? "x" : "y";
        const start = (n) => n.boundingBox()[axis + "1"];
        const free = FA.cy.nodes(".entry").filter(n => n.incomers("edge").empty());
        const others = FA.cy.nodes("[w]").not(".entry");
        return [free.length, Math.max(...free.map(start)), Math.min(...others.map(start))]; }""")
    assert where[0] >= 1, "no entry point drawn"
    assert where[1] <= where[2] + 1, where


def test_architecture_readable_at_first_paint_small(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/graph")
    graph_ready(page)
    assert page.is_checked("input[name=level][value=module]")
    labels = graph_labels(page)
    check_labels(labels, at_least=8)
    assert any("<request>" in x["text"] for x in labels)
    _entries_first(page)
    page.screenshot(path=str(shots / "map-small.png"))

    # a module opens in place: its functions appear inside its box, still readable
    click_node(page, "shop.checkout")
    page.wait_for_function("() => FA.graphReady && FA.cy.nodes('.box.opened').length === 1")
    assert "open=shop.checkout" in page.url
    inside = page.evaluate("() => FA.cy.nodes('.box.opened').children().map(n => n.id())")
    assert "shop.checkout:checkout" in inside
    check_labels(graph_labels(page), at_least=5)
    page.screenshot(path=str(shots / "map-small-opened.png"))

    # hovering a function shows its paths: its callers up to the entry points, its callees
    node = page.evaluate("""() => { const n = FA.cy.getElementById('shop.checkout:checkout');
        const p = n.renderedPosition(); const r = document.getElementById('cy').getBoundingClientRect();
        return {x: r.left + p.x, y: r.top + p.y}; }""")
    page.mouse.move(node["x"], node["y"])
    page.wait_for_function("() => FA.cy.elements('.path').length > 0")
    lit = page.evaluate("""() => { const n = FA.cy.getElementById('shop.checkout:checkout');
        return [n.predecessors('node').every(x => x.hasClass('path')),
                n.successors('node').every(x => x.hasClass('path')),
                FA.cy.nodes('[w]').filter(x => !x.hasClass('path') && !x.hasClass('faded')).map(x => x.id())]; }""")
    assert lit[0] and lit[1] and lit[2] == ["shop.checkout:checkout"], lit
    page.screenshot(path=str(shots / "map-small-hover.png"))
    page.mouse.move(5, 5)

    # the frame of the opened box closes it again
    box = page.evaluate("""() => { const b = FA.cy.nodes('.box.opened')[0].renderedBoundingBox({includeLabels: false});
        const r = document.getElementById('cy').getBoundingClientRect();
        return {x: r.left + (b.x1 + b.x2) / 2, y: r.top + b.y1 + 5}; }""")
    page.mouse.click(box["x"], box["y"])
    page.wait_for_function("() => FA.graphReady && FA.cy.nodes('.box.opened').length === 0 && "
                           "FA.cy.getElementById('shop.checkout').length === 1")


def test_selecting_a_function_highlights_its_neighbours(page: Page, demo_url: str,
                                                       shots: Path) -> None:
    page.goto(demo_url + "/graph?level=function")
    graph_ready(page)
    click_node(page, "shop.inventory:stock_level")
    page.wait_for_function("() => document.getElementById('details-name') !== null")
    state = page.evaluate("""() => { const n = FA.cy.getElementById('shop.inventory:stock_level');
        const near = n.closedNeighborhood('node').map(x => x.id()).sort();
        const lit = FA.cy.nodes('[w]').filter(x => !x.hasClass('faded')).map(x => x.id()).sort();
        return [near, lit, n.connectedEdges().every(e => e.hasClass('hl'))]; }""")
    assert state[0] == state[1] and len(state[0]) >= 3 and state[2], state
    check_labels(graph_labels(page), at_least=3)
    page.screenshot(path=str(shots / "map-selected.png"))


def test_error_and_hot_overlays(page: Page, demo_url: str, shots: Path) -> None:
    page.goto(demo_url + "/graph")
    graph_ready(page)
    page.check("#overlay-errors")
    state = page.evaluate("""() => [FA.cy.edges('.ov-err').length,
        FA.cy.edges('.ov-err').every(e => e.data('errors') > 0), FA.cy.edges('.ov-dim').length]""")
    assert state[0] > 0 and state[1] and state[2] > 0
    page.check("#overlay-hot")
    assert page.evaluate("() => FA.cy.edges('.ov-hot').length") > 0
    assert "overlay" not in page.url  # overlays are drawn, not filters
    page.screenshot(path=str(shots / "map-overlays.png"))


def test_architecture_readable_at_first_paint_large(page: Page, large_url: tuple[str, dict],
                                                    shots: Path) -> None:
    page.set_default_timeout(LARGE_TIMEOUT_MS)  # big pages on a loaded machine
    base, ids = large_url
    page.goto(f"{base}/runs/{ids['run_id']}/graph")
    graph_ready(page, LARGE_TIMEOUT_MS)
    assert not page.is_checked("input[name=level][value=function]")
    check_labels(graph_labels(page), at_least=5)
    _entries_first(page)
    page.screenshot(path=str(shots / "map-large.png"))
    # open the biggest box in place: readable again
    biggest = page.evaluate("""() => FA.cy.nodes('.group').sort((a, b) => b.data('w') - a.data('w'))
        .filter(n => !n.hasClass('entry'))[0].id()""")
    click_node(page, biggest)
    page.wait_for_function("() => FA.graphReady && FA.cy.nodes('.box.opened').length === 1",
                           timeout=LARGE_TIMEOUT_MS)
    check_labels(graph_labels(page), at_least=3)
    page.screenshot(path=str(shots / "map-large-opened.png"))
    # the function level of 1 000 functions: no label drawn too small to read
    page.goto(f"{base}/runs/{ids['run_id']}/graph?level=function")
    graph_ready(page, LARGE_TIMEOUT_MS)
    check_labels(graph_labels(page), at_least=1)
    page.screenshot(path=str(shots / "map-large-functions.png"))


@pytest.fixture(scope="module")
def flow_url(flow_dir: Path) -> Iterator[str]:
    with serve("--data-dir", str(flow_dir), "--port", "0") as (url, _):
        yield url.rstrip("/")


def _flow_ready(page: Page) -> None:
    page.wait_for_function("() => window.FA && FA.flowReady === true")


def test_flow_view_shows_the_planted_flow(page: Page, flow_url: str, shots: Path) -> None:
    page.goto(flow_url + "/")
    page.click("nav a:text('Flows')")
    _flow_ready(page)
    assert page.inner_text("#flow-entry") == "__main__:handle"
    check_labels(dom_labels(page, "#flow-canvas"), at_least=10)
    steps = page.evaluate("""() => [...document.querySelectorAll('#flow-canvas .flow-step')].map(g =>
        [g.dataset.function, g.getAttribute('class'), g.querySelector('.stat').textContent])""")
    by_fn = {fn: (cls, text) for fn, cls, text in steps}
    assert len(steps) == 6  # handle, its four steps, and the audit thread of session 7
    assert by_fn["__main__:cached"][1].startswith("25%")
    assert by_fn["__main__:Audit.record"][1].startswith("5%")
    assert by_fn["__main__:Store.load"][1].startswith("75%")
    assert "err" in by_fn["__main__:Store.load"][0] and "NotFound×3" in by_fn["__main__:Store.load"][1]
    assert "partial" in by_fn["__main__:handle"][0]
    # steps are drawn in the order of the tree: every child below and right of its parent
    boxes = page.evaluate("""() => [...document.querySelectorAll('#flow-canvas .flow-step')].map(g => {
        const r = g.getBoundingClientRect(); return [g.dataset.function, r.left, r.top]; })""")
    root = boxes[0]
    assert root[0] == "__main__:handle" and all(b[1] > root[1] and b[2] > root[2] for b in boxes[1:])
    assert page.locator("#flow-variants tbody tr").count() == 4
    page.screenshot(path=str(shots / "flows-small.png"), full_page=True)


def test_flow_view_large(page: Page, large_url: tuple[str, dict], shots: Path) -> None:
    page.set_default_timeout(LARGE_TIMEOUT_MS)  # big pages on a loaded machine
    base, ids = large_url
    page.goto(f"{base}/runs/{ids['run_id']}/flows")
    _flow_ready(page)
    check_labels(dom_labels(page, "#flow-canvas"), at_least=5)
    assert page.locator("#flow-canvas .flow-step").count() > 5
    page.screenshot(path=str(shots / "flows-large.png"))


def _sequence_ready(page: Page) -> None:
    page.wait_for_function("() => window.FA && FA.sequenceReady === true")


def test_sequence_view_shows_the_planted_session(page: Page, flow_url: str, shots: Path) -> None:
    # the session where Store.load raised NotFound and handle() handled it
    page.goto(flow_url + "/?result=partial")
    page.locator("#sessions-body tr").first.locator("a").click()
    page.wait_for_url("**/sessions/**")
    page.click("#to-sequence")
    _sequence_ready(page)
    check_labels(dom_labels(page, "#seq-canvas"), at_least=8)
    lifelines = page.evaluate("""() => [...document.querySelectorAll('#seq-canvas .actor')]
        .map(g => [g.dataset.lifeline, g.getBoundingClientRect().left])""")
    assert [name for name, _x in lifelines] == ["program", "__main__", "__main__:Store"]
    assert lifelines[0][1] < lifelines[1][1] < lifelines[2][1]
    msgs = page.evaluate("""() => [...document.querySelectorAll('#seq-canvas .msg')].map(g =>
        [g.dataset.kind, g.getAttribute('class'), g.querySelector('text').textContent,
         g.getBoundingClientRect().top])""")
    texts = [m[2] for m in msgs]
    assert texts[0].startswith("handle(") and texts[1].startswith("validate(")
    assert any(t.startswith("Store.load(") for t in texts)
    raised = next(m for m in msgs if m[2] == "raise __main__.NotFound")
    assert raised[0] == "return" and "error" in raised[1]
    assert [m[3] for m in msgs] == sorted(m[3] for m in msgs)  # one row each, in call order
    assert len(msgs) == 6
    page.screenshot(path=str(shots / "sequence-small.png"), full_page=True)
    # session 7 started an "audit" thread: two lanes, side by side, still readable
    page.goto(flow_url + "/?q=Audit.record")
    page.locator("#sessions-body tr").first.locator("a").click()
    page.wait_for_url("**/sessions/**")
    page.click("#to-sequence")
    _sequence_ready(page)
    check_labels(dom_labels(page, "#seq-canvas"), at_least=8)
    lanes = page.evaluate("""() => [...document.querySelectorAll('#seq-canvas .lane')].map(g =>
        [g.dataset.lane, g.getBoundingClientRect().left, g.getBoundingClientRect().right])""")
    assert [name.split(" · ")[0] for name, _l, _r in lanes] == ["MainThread", "audit"], lanes
    assert lanes[0][2] <= lanes[1][1]
    page.screenshot(path=str(shots / "sequence-threads.png"), full_page=True)


def test_sequence_view_of_a_demo_request_and_a_large_session(
        page: Page, demo_url: str, large_url: tuple[str, dict], shots: Path) -> None:
    page.goto(demo_url + "/?root=POST%20/checkout")
    page.locator("#sessions-body tr").first.locator("a").click()
    page.wait_for_url("**/sessions/**")
    page.click("#to-sequence")
    _sequence_ready(page)
    check_labels(dom_labels(page, "#seq-canvas"), at_least=10)
    names = page.evaluate("() => [...document.querySelectorAll('#seq-canvas .actor')].map(g => g.dataset.lifeline)")
    assert names[:2] == ["client", "<request>"] and "shop.cart:Cart" in names
    page.screenshot(path=str(shots / "sequence-demo.png"))
    page.set_default_timeout(LARGE_TIMEOUT_MS)  # big pages on a loaded machine
    base, ids = large_url
    page.goto(f"{base}/sessions/{ids['big_session']}/sequence")
    _sequence_ready(page)
    check_labels(dom_labels(page, "#seq-canvas"), at_least=10)
    assert "calls not drawn" in page.inner_text("#seq-facts")
    page.screenshot(path=str(shots / "sequence-large.png"))


def test_compare_two_runs_on_the_map(page: Page, compare_dir: Path, shots: Path) -> None:
    with serve("--data-dir", str(compare_dir), "--port", "0") as (url, _):
        base = url.rstrip("/")
        page.goto(base + "/graph?level=function")
        graph_ready(page)
        run_a = page.evaluate("async () => (await (await fetch('/api/runs')).json()).runs[1].run_id")
        page.select_option("#compare", run_a)
        page.wait_for_url(f"**compare={run_a}**")
        page.wait_for_function("() => FA.graphReady && FA.cy.nodes('.cmp-gone').length > 0")
        state = page.evaluate("""() => ({
            fresh: FA.cy.getElementById('__main__:fresh').classes(),
            legacy: FA.cy.getElementById('__main__:legacy').classes(),
            fetch: FA.cy.getElementById('__main__:fetch').classes(),
            newEdges: FA.cy.edges('.cmp-new').map(e => e.target().id()),
            goneEdges: FA.cy.edges('.cmp-gone').map(e => e.target().id()) })""")
        assert {"cmp-new", "cmp-errors"} <= set(state["fresh"])
        assert "cmp-gone" in state["legacy"] and "cmp-slower" in state["fetch"]
        assert state["newEdges"] == ["__main__:fresh"] and state["goneEdges"] == ["__main__:legacy"]
        summary = page.inner_text("#compare-summary")
        assert "1 new functions" in summary and "__main__:legacy" in summary
        assert "ValueError in __main__:fresh" in summary
        check_labels(graph_labels(page), at_least=4)
        page.screenshot(path=str(shots / "map-compare.png"))


def test_hostile_names_stay_text_in_the_new_views(page: Page, hostile_dir: Path,
                                                  shots: Path) -> None:
    from urllib.parse import quote

    from viewer_data import HOSTILE_FUNCTION, HOSTILE_RUN, HOSTILE_SESSION, XSS

    with serve("--data-dir", str(hostile_dir), "--port", "0") as (url, _):
        base = url.rstrip("/")
        page.goto(f"{base}/runs/{HOSTILE_RUN}/flows?entry={quote(HOSTILE_FUNCTION)}")
        _flow_ready(page)
        assert HOSTILE_FUNCTION in page.inner_text("#flow-canvas")
        page.goto(f"{base}/sessions/{HOSTILE_SESSION}/sequence")
        _sequence_ready(page)
        assert XSS in page.inner_text("#seq-canvas")
        page.screenshot(path=str(shots / "hostile-sequence.png"))
        other = page.evaluate(
            "async () => (await (await fetch('/api/runs')).json()).runs.at(-1).run_id")
        page.goto(f"{base}/runs/{HOSTILE_RUN}/graph?compare={quote(other)}")
        graph_ready(page)
        assert page.evaluate("() => document.querySelectorAll('img, script:not([src]):not([type])').length") == 0
