"""Where each framework's application enters the protocol middlewares, and where its URL
matching tells the route template. Each patch runs when (and only if) the program imports
the framework module; originals are kept as ``__wrapped__`` and every patch is idempotent.

* Flask: ``Flask.wsgi_app`` is the WSGI app; ``Flask.preprocess_request`` runs after URL
  matching (``request.url_rule``) and ``Flask.process_response`` sees whether it streams.
* Django: ``WSGIHandler.__call__`` / ``ASGIHandler.__call__`` are the apps;
  ``BaseHandler.resolve_request`` returns the resolver match (``.route``, includes joined).
* Starlette (and FastAPI, a Starlette subclass): ``Starlette.__call__`` is the ASGI app; a
  matched route's ``handle()`` (Starlette's and FastAPI's route classes) names it.
"""

from __future__ import annotations

from types import GeneratorType, ModuleType

from .. import recorder
from . import asgi, webrequest, wsgi

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable


def _patch(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = owner.__dict__.get(name)
    if original is None or getattr(original, "_flowagent_patch", False):
        return
    patched = make(original)
    patched._flowagent_patch = True  # type: ignore[attr-defined]
    setattr(owner, name, patched)


# Flask's hooks sit beside the view, not around it: no agent frame in a view's traceback.

def _flask_preprocess(module: ModuleType) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``Flask.preprocess_request`` naming the request after its matched ``url_rule``. Flask
    2.2+ keeps the request context in a context variable: it is read directly, not through
    the ``request`` proxy (an import statement and a proxy lookup per request)."""
    get_ctx = getattr(getattr(module, "_cv_request", None), "get", None)

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def preprocess_request(self: Any) -> Any:
            try:
                if get_ctx is not None:
                    ctx = get_ctx(None)
                    rule = ctx.request.url_rule if ctx is not None else None
                else:
                    from flask import request

                    rule = request.url_rule
                if rule is not None:
                    webrequest.set_template(rule.rule)
            except Exception:
                recorder.S.agent_errors += 1
            return original(self)

        preprocess_request.__wrapped__ = original  # type: ignore[attr-defined]
        return preprocess_request
    return make


def _flask_process_response(original: Callable[..., Any]) -> Callable[..., Any]:
    current = webrequest.current

    def process_response(self: Any, response: Any) -> Any:
        response = original(self, response)
        try:
            # A view that streams returns a generator (stream_with_context makes one too);
            # an error page converted from werkzeug's own response is already produced.
            if type(getattr(response, "response", None)) is GeneratorType:
                root = current()
                if root is not None:
                    root.streaming = True
        except Exception:
            recorder.S.agent_errors += 1
        return response

    process_response.__wrapped__ = original  # type: ignore[attr-defined]
    return process_response


def patch_flask(module: ModuleType) -> None:
    _patch(module.Flask, "wsgi_app", wsgi.wrap_app)
    _patch(module.Flask, "preprocess_request", _flask_preprocess(module))
    _patch(module.Flask, "process_response", _flask_process_response)


def _django_resolve(original: Callable[..., Any]) -> Callable[..., Any]:
    def resolve_request(self: Any, request: Any) -> Any:
        match = original(self, request)
        try:
            route = getattr(match, "route", None)
            if type(route) is str:
                webrequest.set_template("/" + route.lstrip("^").lstrip("/"))
        except Exception:
            recorder.S.agent_errors += 1
        return match

    resolve_request.__wrapped__ = original  # type: ignore[attr-defined]
    return resolve_request


def patch_django_base(module: ModuleType) -> None:
    _patch(module.BaseHandler, "resolve_request", _django_resolve)


def patch_django_wsgi(module: ModuleType) -> None:
    _patch(module.WSGIHandler, "__call__", wsgi.wrap_app)


def patch_django_asgi(module: ModuleType) -> None:
    _patch(module.ASGIHandler, "__call__", asgi.wrap_app)


def patch_starlette(module: ModuleType) -> None:
    _patch(module.Starlette, "__call__", asgi.wrap_app)


def _route_handle(original: Callable[..., Any]) -> Callable[..., Any]:
    async def handle(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        try:
            webrequest.set_template(asgi.route_template(scope, getattr(self, "path", None)))
        except Exception:
            recorder.S.agent_errors += 1
        return await original(self, scope, receive, send)

    handle.__wrapped__ = original  # type: ignore[attr-defined]
    return handle


def patch_starlette_routing(module: ModuleType) -> None:
    for cls in (module.Route, module.WebSocketRoute):
        _patch(cls, "handle", _route_handle)


def patch_fastapi_routing(module: ModuleType) -> None:
    # Its routes override handle() and may not call Starlette's.
    for name in ("APIRoute", "APIWebSocketRoute"):
        cls = getattr(module, name, None)
        if cls is not None:
            _patch(cls, "handle", _route_handle)


HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "flask.app": patch_flask,
    "django.core.handlers.base": patch_django_base,
    "django.core.handlers.wsgi": patch_django_wsgi,
    "django.core.handlers.asgi": patch_django_asgi,
    "starlette.applications": patch_starlette,
    "starlette.routing": patch_starlette_routing,
    "fastapi.routing": patch_fastapi_routing,
}
