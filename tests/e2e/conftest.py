"""The end-to-end matrix: instrumentation backends × recorder twins.

The recorder's hot path has two twins with the same behaviour, the C accelerator (the
default where it is built) and pure Python (``FLOWAGENT_PURE=1``). Every end-to-end test that
takes the ``backend`` fixture runs with ``wrap`` on each twin and with ``profile`` on the
default one: that is where the twins could differ (the wrap backend drives the whole hot
path; the profile backend only opens and closes frames through the same code), at half the
cost of the full product. ``monitor`` runs on each twin too: on the default one its events
go to the C callbacks (``_cores.MonitorCore``), on the Python twin to Python callbacks.
"""

from __future__ import annotations

import pytest

from helpers import PURE, needs_sys_monitoring


@pytest.fixture(params=[pytest.param(("wrap", False), id="wrap"),
                        pytest.param(("wrap", True), id="wrap-pure"),
                        pytest.param(("profile", False), id="profile"),
                        pytest.param(("monitor", False), id="monitor",
                                     marks=needs_sys_monitoring),
                        pytest.param(("monitor", True), id="monitor-pure",
                                     marks=needs_sys_monitoring)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend a test records with; the ``-pure`` variant forces the Python twin."""
    name, pure = request.param
    if pure:
        monkeypatch.setenv(PURE, "1")
    return name
