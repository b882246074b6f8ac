"""Tests as sessions: under ``flowagent run -m pytest`` each test is one session, rooted at
``<test>:NODE_ID``, holding its fixtures' setup and teardown, whose output is the test's
outcome (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``); a failed test is an
``error`` result whose exception reads ``failed``.

The hook is pytest's own per-test protocol function (``_pytest.runner.runtestprotocol``),
patched when the program imports pytest's runner; nothing is imported otherwise.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from .. import recorder

MAX_NODE_ID = 512  # node ids are test code, but parametrized ids can be long


class _Failed(Exception):
    """Never raised: stands for a failed test (its ``<exception>``)."""


_FAILED = type("_Failed", (_Failed,), {"__module__": "builtins", "__qualname__": "failed"})


def _outcome(reports: Any) -> str:
    outcome = "passed"
    for rep in reports or ():
        if getattr(rep, "failed", False):
            return "failed"
        if getattr(rep, "skipped", False):
            outcome = "xfailed" if getattr(rep, "wasxfail", None) is not None else "skipped"
        elif getattr(rep, "when", "") == "call" and getattr(rep, "wasxfail", None) is not None:
            outcome = "xpassed"
    return outcome


def _protocol(original: Callable) -> Callable:
    def runtestprotocol(item: Any, log: bool = True, nextitem: Any = None) -> Any:
        frame = None
        try:
            if recorder._get() is None:
                node_id = str(item.nodeid)
                if len(node_id) > MAX_NODE_ID:
                    node_id = node_id[:MAX_NODE_ID] + "…"
                frame = recorder.enter_root(node_id, module="<test>", always=True)
        except Exception:
            recorder.S.agent_errors += 1
        if frame is None:
            return original(item, log=log, nextitem=nextitem)
        exc_type = None
        reports = None
        try:
            reports = original(item, log=log, nextitem=nextitem)
            return reports
        except BaseException as exc:
            exc_type = type(exc)
            raise
        finally:
            try:
                outcome = _outcome(reports)
                recorder.set_output_shape(frame, outcome)
                if exc_type is None and outcome == "failed":
                    exc_type = _FAILED
            except Exception:
                recorder.S.agent_errors += 1
            recorder.close_call(frame, exc_type)

    runtestprotocol.__wrapped__ = original  # type: ignore[attr-defined]
    runtestprotocol._flowagent_patch = True  # type: ignore[attr-defined]
    return runtestprotocol


def patch_pytest_runner(module: ModuleType) -> None:
    original = module.__dict__.get("runtestprotocol")
    if original is not None and not getattr(original, "_flowagent_patch", False):
        module.runtestprotocol = _protocol(original)


HOOKS: dict[str, Callable[[ModuleType], None]] = {"_pytest.runner": patch_pytest_runner}
