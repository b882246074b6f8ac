"""Framework and runtime entry points, patched when (and only if) the program imports them.

* Flask: each WSGI request is one session, rooted at a synthetic ``<request>`` call named by
  method and route (``GET /items/<int:item_id>``), so ``before_request`` hooks, the view and
  ``after_request`` hooks land in the same session. The patch uses wrapt, imported only when
  Flask is.
* multiprocessing: a forked worker ends in ``os._exit`` (no ``atexit``), so its final flush
  hooks multiprocessing's own exit path; a spawned child re-runs the parent's main script as
  ``__mp_main__`` through ``runpy.run_path``, which bypasses import hooks, so that is routed
  through the same instrumenting compile as the main script.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from . import recorder


def _patch_flask(module: ModuleType) -> None:
    import wrapt

    def wsgi_app(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        environ = args[0] if args else kwargs.get("environ", {})
        method = environ.get("REQUEST_METHOD", "?") if isinstance(environ, dict) else "?"
        frame = recorder.enter_root(f"{method} (no route)")
        if frame is None or len(args) != 2:
            return wrapped(*args, **kwargs)
        environ, start_response = args

        def capture(status: str, headers: Any, *exc_info: Any) -> Any:
            # The status code is protocol metadata, not user data: it becomes the shape.
            recorder.set_output_shape(frame, f"HTTP {str(status)[:3]}")
            return start_response(status, headers, *exc_info)

        exc_type = None
        try:
            return wrapped(environ, capture)
        except BaseException as exc:
            exc_type = type(exc)
            raise
        finally:
            recorder.close_call(frame, exc_type)

    def full_dispatch_request(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        try:
            from flask import request

            rule = request.url_rule
            frame = recorder._get()
            while frame is not None and frame[recorder.PARENT] is not None:
                frame = frame[recorder.PARENT]
            if rule is not None and frame is not None:
                recorder.rename_root(frame, f"{request.method} {rule.rule}")
        except Exception:
            recorder.S.agent_errors += 1
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(module, "Flask.wsgi_app", wsgi_app)
    wrapt.wrap_function_wrapper(module, "Flask.full_dispatch_request", full_dispatch_request)


def _patch_mp_util(module: ModuleType) -> None:
    original = module._exit_function

    def _exit_function(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            from . import bootstrap

            if bootstrap.transport is not None:
                bootstrap.transport.close()

    module._exit_function = _exit_function


def _patch_mp_spawn(module: ModuleType) -> None:
    import runpy

    original = module._fixup_main_from_path

    def _fixup_main_from_path(main_path: str) -> Any:
        real_run_path = runpy.run_path

        def run_path(path: str, init_globals: Any = None, run_name: str | None = None) -> dict:
            if os.path.splitext(path)[1] != ".py" or not os.path.isfile(path):
                return real_run_path(path, init_globals, run_name)
            from .runmain import build_main_code

            code = build_main_code(path, run_name or "<run_path>")
            namespace: dict[str, Any] = dict(init_globals or {})
            namespace.update(__name__=run_name, __file__=os.path.abspath(path),
                             __cached__=None, __loader__=None, __package__="", __spec__=None,
                             __builtins__=__builtins__)
            exec(code, namespace)
            return namespace

        runpy.run_path = run_path
        try:
            return original(main_path)
        finally:
            runpy.run_path = real_run_path

    module._fixup_main_from_path = _fixup_main_from_path


def _patch_mp_pool(module: ModuleType) -> None:
    original = module.worker

    def worker(*args: Any, **kwargs: Any) -> Any:
        recorder.S.sync_sessions = True  # Pool.terminate() SIGTERMs idle workers
        return original(*args, **kwargs)

    # Pickled by reference for spawn: keep the name pickle looks up.
    worker.__module__, worker.__qualname__, worker.__name__ = module.__name__, "worker", "worker"
    worker.__wrapped__ = original  # type: ignore[attr-defined]
    module.worker = worker


def install(backend: Any) -> None:
    backend.add_post_import_hook("flask.app", _patch_flask)
    backend.add_post_import_hook("multiprocessing.util", _patch_mp_util)
    backend.add_post_import_hook("multiprocessing.pool", _patch_mp_pool)
    if backend.capabilities.instruments_main:
        backend.add_post_import_hook("multiprocessing.spawn", _patch_mp_spawn)
