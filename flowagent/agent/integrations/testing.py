"""Tests as sessions: under ``flowagent run -m pytest`` each test is one session, rooted at
``<test>:NODE_ID``, holding its fixtures' setup and teardown, whose output is the test's
outcome (``passed``, ``failed``, ``skipped``, ``xfailed``, ``xpassed``); a failed test is an
``error`` result whose exception reads ``failed``.

The hook is pytest's own per-test protocol function (``_pytest.runner.runtestprotocol``),
patched when the program imports pytest's runner; nothing is imported otherwise.

Test modules are imported by pytest's own import hook, which rewrites their ``assert``
statements and so never reaches the ``wrap`` backend's: for the modules the run records,
its rewrite step also instruments the rewritten tree (:func:`patch_pytest_rewrite`), and
pytest's cache of rewritten code is neither read nor written for them (instrumented code
must never be found by a later run without the agent). The other backends see the code
as it runs and need nothing.
"""

from __future__ import annotations

from types import ModuleType

from .. import recorder, runstate

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable

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


def _protocol(original: Callable[..., Any]) -> Callable[..., Any]:
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
        module.__dict__["runtestprotocol"] = _protocol(original)


def _recorded_module(fn: Any, config: Any) -> str | None:
    """The module name pytest imports the test file ``fn`` as, when the run records it
    with the ``wrap`` backend."""
    selector = runstate.selector
    if selector is None or runstate.backend_name != "wrap":
        return None
    import _pytest.assertion.rewrite as rewrite

    hook = config.stash[rewrite.assertstate_key].hook
    names: list[str] = [name for name, path in getattr(hook, "_rewritten_names", {}).items()
                        if path == fn]
    if not names or not selector.wants(names[-1], str(fn)):
        return None
    return names[-1]


def patch_pytest_rewrite(module: ModuleType) -> None:
    rewrite_test = module.__dict__.get("_rewrite_test")
    read_pyc, write_pyc = module.__dict__.get("_read_pyc"), module.__dict__.get("_write_pyc")
    rewrite_asserts = module.__dict__.get("rewrite_asserts")
    if rewrite_test is None or read_pyc is None or write_pyc is None or rewrite_asserts is None \
            or getattr(rewrite_test, "_flowagent_patch", False):
        return
    ours: set[int] = set()  # ids of code objects instrumented here (alive until executed)

    def _rewrite_test(fn: Any, config: Any) -> Any:
        try:
            name = _recorded_module(fn, config)
        except Exception:
            recorder.S.agent_errors += 1
            name = None
        if name is None:
            return rewrite_test(fn, config)
        import ast
        import importlib.util

        from ..instrument import Instrumenter

        source = fn.read_bytes()
        strfn = str(fn)
        tree = ast.parse(source, filename=strfn)
        rewrite_asserts(tree, source, strfn, config)
        try:
            Instrumenter(name, strfn, recorder.register_function, runstate.nested,
                         source.splitlines() if b"yield" in source else None).transform(tree)
        except Exception:
            recorder.S.agent_errors += 1
            return rewrite_test(fn, config)
        co = compile(tree, strfn, "exec", dont_inherit=True)
        ours.add(id(co))
        return importlib.util.source_hash(source), co

    def _read_pyc(source: Any, pyc: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            import sys

            hook = next((f for f in sys.meta_path
                         if isinstance(f, module.AssertionRewritingHook)), None)
            if hook is not None and _recorded_module(source, hook.config):
                return None  # rewrite (and instrument) it afresh
        except Exception:
            recorder.S.agent_errors += 1
        return read_pyc(source, pyc, *args, **kwargs)

    def _write_pyc(st: Any, co: Any, *args: Any, **kwargs: Any) -> Any:
        if id(co) in ours:
            ours.discard(id(co))
            return True  # instrumented code never goes into pytest's cache
        return write_pyc(st, co, *args, **kwargs)

    for new, old in ((_rewrite_test, rewrite_test), (_read_pyc, read_pyc),
                     (_write_pyc, write_pyc)):
        new.__wrapped__ = old  # type: ignore[union-attr]
        new._flowagent_patch = True  # type: ignore[union-attr]
    module.__dict__["_rewrite_test"] = _rewrite_test
    module.__dict__["_read_pyc"] = _read_pyc
    module.__dict__["_write_pyc"] = _write_pyc


HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "_pytest.runner": patch_pytest_runner,
    "_pytest.assertion.rewrite": patch_pytest_rewrite,
}
