"""``flowagent report -o run.html``: one self-contained file, opened from disk in Chromium
with every network request refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from viewer_data import REPO, clean_env, flowagent


def test_report_cli_writes_one_file_and_refuses_bad_targets(flow_dir: Path, tmp_path: Path
                                                            ) -> None:
    out = tmp_path / "run.html"
    done = flowagent("report", "--data-dir", str(flow_dir), "-o", str(out), cwd=tmp_path)
    assert "written to" in done.stdout and out.is_file()
    html = out.read_text(encoding="utf-8")
    assert html.count("<script src=") == 0 and "<link " not in html  # everything inline
    assert "__main__:handle" in html and 'id="report-data"' in html
    bad = subprocess.run([sys.executable, "-m", "flowagent", "report", "--data-dir",
                          str(flow_dir), "-o", str(tmp_path)], cwd=REPO, env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "is a directory" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "flowagent", "report", "--data-dir",
                              str(tmp_path / "none"), "-o", str(out)], cwd=REPO,
                             env=clean_env(), capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "flowagent: error:" in missing.stderr


def test_report_data_has_the_planted_flow_and_worst_sessions(flow_dir: Path) -> None:
    from flowagent.reports import html as report
    from flowagent.store.sqlite import SQLiteStore, db_path

    store = SQLiteStore(db_path(str(flow_dir)), readonly=True)
    try:
        data = report.build(store, store.latest_run(), worst=3)
    finally:
        store.close()
    assert set(data["views"]) == {"function", "class", "module", "package"}
    handle = next(f for f in data["flows"] if f["entry"] == "__main__:handle")
    steps = {c["function"]: c["sessions"] for c in handle["tree"]["children"]}
    assert steps["__main__:Store.load"] == 15 and steps["__main__:cached"] == 5
    assert 1 <= len(data["sessions"]) <= 6
    durations = [s["duration_ns"] for s in data["sessions"]]
    assert durations == sorted(durations, reverse=True)
    assert all(s["sequence"]["messages"] for s in data["sessions"])


def test_inline_scripts_cannot_close_their_element() -> None:
    from flowagent.reports.html import _inline_script

    assert _inline_script('a = "</script><script>x</script>"') == \
        'a = "<\\/script><script>x<\\/script>"'
    assert "<!--" not in _inline_script("if (a <!-- b) {}")


@pytest.mark.browser
def test_report_opens_from_disk_without_network(flow_dir: Path, demo_dir: Path, tmp_path: Path,
                                                artifacts: Path) -> None:
    from test_browser import CHROMIUM, CHROMIUM_ARGS, LARGE_TIMEOUT_MS

    from browser_checks import check_labels, dom_labels, graph_labels

    if CHROMIUM is None:
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "demo.html"
    flowagent("report", "--data-dir", str(demo_dir), "-o", str(out), cwd=tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            problems: list[str] = []
            refused: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

            def guard(route) -> None:  # type: ignore[no-untyped-def]
                url = route.request.url
                if url.startswith(("file://", "blob:", "data:")):
                    route.continue_()
                else:
                    refused.append(url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(out.as_uri())
            page.wait_for_function("() => window.FA && FA.reportReady && FA.graphReady",
                                   timeout=LARGE_TIMEOUT_MS)
            assert not refused and not problems, (refused, problems)
            check_labels(graph_labels(page), at_least=5)
            assert page.evaluate("() => FA.cy.nodes('[w]').length") == 11  # the demo's modules
            page.screenshot(path=str(shots / "report-top.png"))
            page.locator("#flows").scroll_into_view_if_needed()
            check_labels(dom_labels(page, "#flow-canvas"), at_least=5)
            page.locator("#worst").scroll_into_view_if_needed()
            check_labels(dom_labels(page, "#seq-canvas"), at_least=5)
            page.screenshot(path=str(shots / "report-full.png"), full_page=True)
            # another level is laid out in place, still without the network
            page.check("#levels input[value=function]")
            page.wait_for_function("() => FA.graphReady && FA.cy.nodes('[w]').length === 68",
                                   timeout=LARGE_TIMEOUT_MS)
            check_labels(graph_labels(page), at_least=5)
            assert not refused and not problems, (refused, problems)
        finally:
            browser.close()
