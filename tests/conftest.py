"""Shared fixtures: the backend matrix and a guard on interpreter-global state.

End-to-end tests import :mod:`helpers` (this directory is on ``sys.path`` because it holds
this conftest and no ``__init__.py``).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Iterator

import pytest

from helpers import needs_sys_monitoring

# A test run started in the background by a shell without job control (`cmd &` in a script)
# inherits SIGINT ignored, and would pass that on to every program the tests start: the tests
# that compare how a program dies by SIGINT, plainly and recorded, need it as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

BACKENDS = ("wrap", "profile", pytest.param("monitor", marks=needs_sys_monitoring))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every end-to-end recording test runs once per instrumentation backend."""
    return request.param


def _global_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "sys.getprofile": sys.getprofile(),
        "sys.gettrace": sys.gettrace(),
        "threading.getprofile": threading.getprofile(),
        "sys.meta_path": list(sys.meta_path),
        "sys.path_hooks": list(sys.path_hooks),
        "sys.excepthook": sys.excepthook,
        "SIGINT handler": signal.getsignal(signal.SIGINT),
        "SIGTERM handler": signal.getsignal(signal.SIGTERM),
    }
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:  # Python 3.12+: no tool id may stay claimed
        state["sys.monitoring"] = [monitoring.get_tool(i) for i in range(6)]
    return state


@pytest.fixture(scope="session")
def recording_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Fixture programs recorded once per (program, backend) and xdist worker."""
    from helpers import RecordingCache

    cache = RecordingCache(tmp_path_factory)
    yield cache
    cache.close()


@pytest.fixture(autouse=True)
def _global_state_unchanged() -> Iterator[None]:
    """A test (or the code it imports) must leave the interpreter's hooks as it found them."""
    before = _global_state()
    yield
    after = _global_state()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"global interpreter state changed by the test: {changed}"
