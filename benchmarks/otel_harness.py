"""The OpenTelemetry peer: one SDK span per call of every function of a workload package.

What it does, exactly:

* A ``TracerProvider`` of the OpenTelemetry **SDK** (default sampler: parent-based
  always-on, so every span is recorded) with one span processor, :class:`CountingProcessor`,
  whose ``on_end`` only counts: spans are fully created, timed, parented through the context
  and ended, but nothing is exported or kept (no exporter, no batching thread, no memory
  growth). That is the cheapest honest "SDK span per function" set-up; a real exporter only
  adds to it.
* After the workload package is imported (all its submodules too), every function whose
  code lives in the package's files -- module functions, methods, static and class methods,
  property getters, async functions -- is replaced by a wrapper doing
  ``with tracer.start_as_current_span("module:qualname"): return fn(*args, **kwargs)``
  (``async with`` semantics for coroutines: the span covers the whole await).
* References are patched wherever the harness can find them: module globals of every module
  of the package (so ``from .x import f`` copies are patched too), class dictionaries, and
  Flask's ``app.view_functions`` for apps created later (``Flask.add_url_rule`` is patched
  to wrap views of the package as they register).

What it cannot do that flowagent does: functions nested inside functions, functions
captured before the harness ran, and generators (wrapped as plain calls). No shapes are
computed; span attributes are empty.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
import sys
import types
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider


class CountingProcessor(SpanProcessor):
    """Counts ended spans and drops them (no export)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.ended += 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _wrap(fn: Any, tracer: Any) -> Any:
    name = f"{fn.__module__}:{fn.__qualname__}"
    start = tracer.start_as_current_span
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            with start(name):
                return await fn(*args, **kwargs)
        return awrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with start(name):
            return fn(*args, **kwargs)
    return wrapper


def instrument_package(package: str) -> CountingProcessor:
    processor = CountingProcessor()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("flowagent-benchmarks")

    root = importlib.import_module(package)
    pkg_dir = os.path.join(os.path.realpath(os.path.dirname(root.__file__)), "")
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        modules.append(importlib.import_module(info.name))

    wrapped: dict[int, Any] = {}

    def ours(obj: Any) -> bool:
        # type(), not isinstance(): module globals include proxies (flask.request) whose
        # attribute access raises outside a request.
        return (type(obj) is types.FunctionType
                and os.path.realpath(obj.__code__.co_filename).startswith(pkg_dir))

    def wrap(fn: Any) -> Any:
        w = wrapped.get(id(fn))
        if w is None:
            w = wrapped[id(fn)] = _wrap(fn, tracer)
        return w

    def patch_class(cls: type) -> None:
        for key, value in list(vars(cls).items()):
            if isinstance(value, staticmethod) and ours(value.__func__):
                setattr(cls, key, staticmethod(wrap(value.__func__)))
            elif isinstance(value, classmethod) and ours(value.__func__):
                setattr(cls, key, classmethod(wrap(value.__func__)))
            elif isinstance(value, property) and ours(value.fget):
                setattr(cls, key, property(wrap(value.fget), value.fset, value.fdel,
                                           value.__doc__))
            elif ours(value):
                setattr(cls, key, wrap(value))

    for mod in modules:
        for key, value in list(vars(mod).items()):
            if ours(value):
                setattr(mod, key, wrap(value))
            elif type(value) is type and value.__module__ == mod.__name__:
                patch_class(value)

    flask = sys.modules.get("flask")
    if flask is not None:
        original = flask.Flask.add_url_rule

        @functools.wraps(original)
        def add_url_rule(self: Any, rule: str, endpoint: Any = None, view_func: Any = None,
                         *args: Any, **kwargs: Any) -> Any:
            if view_func is not None and ours(view_func):
                view_func = wrap(view_func)
            return original(self, rule, endpoint, view_func, *args, **kwargs)

        flask.Flask.add_url_rule = add_url_rule
    return processor
