"""Reliability suite: fast by default, everything with ``FLOWAGENT_FULL=1``.

* Tests marked ``@pytest.mark.slow`` are skipped unless ``FLOWAGENT_FULL=1`` (CI runs the
  fast part with the rest of ``tests/``; ``scripts/reliability.sh`` runs everything).
* ``figure`` reports what a test measured: one line per figure, shown at the end of the run
  (``-rA`` is not needed) and, when ``FLOWAGENT_FIGURES`` names a file, appended to it as JSON
  lines (``scripts/reliability.sh`` collects them into its report).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

FULL = os.environ.get("FLOWAGENT_FULL", "") == "1"


@pytest.fixture(autouse=True)
def _slow_only_in_full_mode(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is not None and not FULL:
        pytest.skip("slow reliability test: runs with FLOWAGENT_FULL=1 "
                    "(bash scripts/reliability.sh)")


@pytest.fixture
def full_mode() -> bool:
    return FULL


@pytest.fixture
def figure(request: pytest.FixtureRequest,
           record_property: Callable[[str, object], None]) -> Callable[..., None]:
    """``figure("kill -9 after 200 of 400 sessions: ...", stored=200)``: report a figure."""

    def report(text: str, **data: Any) -> None:
        record_property("figure", text)
        path = os.environ.get("FLOWAGENT_FIGURES")
        if path:
            line = json.dumps({"test": request.node.nodeid, "figure": text, **data},
                              default=str)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every figure reported by the tests of this run (also under pytest-xdist)."""
    lines = []
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) != "call":
                continue
            for key, value in getattr(rep, "user_properties", ()):
                if key == "figure":
                    lines.append(f"{rep.nodeid.split('::', 1)[-1]}: {value}")
    lines.extend(_harness_figures(terminalreporter))
    if lines:
        terminalreporter.section("reliability figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)


def _harness_figures(terminalreporter: Any) -> list[str]:
    """The plain-versus-agent harness: one figure per scenario class (see harness.py)."""
    from harness import class_figures

    reports = [rep for reports in terminalreporter.stats.values() for rep in reports
               if getattr(rep, "when", None) == "call"]
    lines = []
    path = os.environ.get("FLOWAGENT_FIGURES")
    for klass, text, data in class_figures(reports):
        lines.append(f"plain-vs-agent {text}")
        if path:
            line = json.dumps({"test": f"test_plain_vs_agent.py::{klass}", "figure": text,
                               **data}, default=str)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    return lines
