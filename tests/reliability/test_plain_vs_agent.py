"""Every scenario of ``scenarios_*.py`` run plainly and under ``flowagent run`` on every
backend: same stdout, stderr (without the launcher's summary) and exit status, then the
scenario's own check of what was recorded (see :mod:`harness`)."""

from __future__ import annotations

import importlib
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest
from harness import (AgentRun, Scenario, backends_of, comparable, differences, run_agent,
                     run_plain)


def _load() -> list[Scenario]:
    found: list[Scenario] = []
    for module in ("scenarios_agent", "scenarios_host"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        found.extend(mod.SCENARIOS)
    names = [s.name for s in found]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"scenario names used twice: {sorted(dup)}"
    return found


SCENARIOS = _load()


def _params() -> list[Any]:
    """(scenario, backend) pairs. The fast part (CI) runs each scenario on one of its
    backends, chosen by a stable hash of its name so that every backend and both twins get
    their share; ``FLOWAGENT_FULL=1`` runs every pair."""
    out = []
    for s in SCENARIOS:
        mine = backends_of(s)
        fast = mine[zlib.crc32(s.name.encode()) % len(mine)] if mine else None
        for backend in mine:
            marks = []
            if s.slow or backend != fast:
                marks.append(pytest.mark.slow)
            if s.limitation:
                marks.append(pytest.mark.xfail(strict=True, reason=s.limitation))
            out.append(pytest.param(s, backend, id=f"{s.name}[{backend}]", marks=marks))
    return out


@pytest.fixture(scope="session")
def plain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the xdist workers of this session: each plain run is made once."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / "plain-runs"
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.e2e
@pytest.mark.parametrize(("scenario", "backend"), _params())
def test_plain_vs_agent(scenario: Scenario, backend: str, tmp_path: Path, plain_dir: Path,
                        record_property: Callable[[str, object], None]) -> None:
    plain, plain_work = run_plain(scenario, plain_dir)
    agent = run_agent(scenario, backend, tmp_path)
    diffs = differences(comparable(plain, plain_work, scenario, agent=False),
                        comparable(agent.outcome, agent.cwd, scenario, agent=True))
    problem: BaseException | None = None
    if not diffs and scenario.check is not None:
        try:
            scenario.check(agent)
        except BaseException as exc:  # reported below, after the figure is recorded
            problem = exc
    lost = _lost(agent)
    record_property("harness", json.dumps({
        "scenario": scenario.name, "klass": scenario.klass, "backend": backend,
        "identical": not diffs, "passed": not diffs and problem is None, "lost": lost,
        "limitation": bool(scenario.limitation),
        "plain_s": round(plain.seconds, 3), "agent_s": round(agent.outcome.seconds, 3)}))
    assert not diffs, (f"{scenario.name} [{backend}] behaves differently under flowagent:\n"
                       + "\n".join(diffs) + f"\nlauncher lines: {agent.summary}")
    if problem is not None:
        raise problem


def _lost(agent: AgentRun) -> int:
    try:
        return agent.lost()
    except Exception:
        return 0
