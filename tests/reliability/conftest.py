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
    lines.extend(_tallies(terminalreporter))
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


# Parametrized tests whose figure is the tally of their own cases in this run: a figure
# printed by a test of its own could claim what no case showed.
TALLIES = {
    "test_bad_input.py::test_bad_input_is_one_clear_line_and_exit_2":
        "bad input not covered by tests/e2e/test_cli.py (bad TOML, unknown keys, bad values "
        "and globs from file/env/CLI, unknown backends, binary and directory targets, unknown "
        "options and commands), each one line 'flowagent: error: ...' naming the culprit, "
        "exit 2, program not started",
    "test_signals.py::test_exit_paths_are_unchanged":
        "exit paths, same stdout, stderr and exit status as plain python",
}


def tally(reports: list[Any]) -> dict[str, dict[str, int]]:
    """Per tallied test: its cases that passed, failed, and were skipped (slow ones)."""
    out: dict[str, dict[str, int]] = {}
    for rep in reports:
        test = rep.nodeid.split("[", 1)[0].rsplit("/", 1)[-1]
        if test not in TALLIES or "[" not in rep.nodeid:
            continue
        counts = out.setdefault(test, {"passed": 0, "failed": 0, "skipped": 0})
        if rep.when == "call" or rep.outcome != "passed":  # a failing setup counts too
            counts[rep.outcome] += 1
    return out


def _tallies(terminalreporter: Any) -> list[str]:
    reports = [rep for reports in terminalreporter.stats.values() for rep in reports
               if getattr(rep, "when", None) in ("setup", "call")]
    lines = []
    path = os.environ.get("FLOWAGENT_FIGURES")
    for test, c in sorted(tally(reports).items()):
        text = (f"{c['passed'] + c['failed']} cases of {TALLIES[test]}: {c['passed']} "
                f"passed, {c['failed']} failed ({c['skipped']} slow ones not run)")
        lines.append(f"{test.split('::', 1)[1]}: {text}")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"test": test, "figure": text, **c}) + "\n")
    return lines
