"""The ASGI middleware: one session per HTTP request or websocket, whatever serves the app
(uvicorn, hypercorn, the program's own ``main()``, a TestClient or httpx in-process).

:func:`wrap_app` turns an ASGI callable into one that opens the request's root in the task
that serves it, records the status of ``http.response.start``, and closes the root when the
application coroutine ends: after the streamed body and the background tasks, which the
framework runs inside that call. The framework hooks name the route as soon as it is
matched (:func:`route_template` for Starlette's and FastAPI's routes).
"""

from __future__ import annotations

import functools

from .. import recorder
from . import webrequest

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable


def route_template(scope: Any, route_path: Any) -> str | None:
    """A Starlette/FastAPI route's path, behind the path of any Mount above it (the part
    of the scope's ``root_path`` that the server did not set)."""
    root = webrequest.current()
    if root is None or type(route_path) is not str or type(scope) is not dict:
        return None
    root_path = scope.get("root_path", "")
    base = root.base_path
    prefix = root_path[len(base):] if type(root_path) is str \
        and root_path.startswith(base) else ""
    return prefix + route_path


def _trace_headers(headers: Any) -> tuple[Any, Any]:
    """The request's ``traceparent`` and ``tracestate`` values (bytes), or None."""
    parent = state = None
    try:
        for pair in headers or ():
            name = pair[0]
            if name == b"traceparent":
                parent = pair[1]
            elif name == b"tracestate":
                state = pair[1]
    except Exception:
        recorder.S.agent_errors += 1
    return parent, state


def wrap_app(app: Callable[..., Any]) -> Callable[..., Any]:
    """An ASGI application method (``async __call__(self, scope, receive, send)``) that
    serves each HTTP request and websocket as its own session.

    The wrapper keeps the exact parameters: servers inspect them (uvicorn calls an app that
    accepts no argument as a factory)."""

    @functools.wraps(app)
    async def serve(self: Any, scope: Any, receive: Any, send: Any) -> Any:
        kind = scope.get("type") if type(scope) is dict else None
        if kind not in ("http", "websocket"):
            return await app(self, scope, receive, send)
        root, token = webrequest.open_request(scope.get("method", "GET")
                                              if kind == "http" else "GET",
                                              *_trace_headers(scope.get("headers")))
        if root is None:
            return await app(self, scope, receive, send)
        base = scope.get("root_path", "")
        root.base_path = base if type(base) is str else ""

        async def capture(message: Any) -> Any:
            try:
                if type(message) is dict:
                    t = message.get("type")
                    if t == "http.response.start":
                        root.status = int(message.get("status", 0))
                    elif t == "websocket.accept" and not root.status:
                        root.status = 101
                    elif t == "websocket.close" and not root.status:
                        root.status = 403  # closed before accepting: the handshake failed
            except Exception:
                recorder.S.agent_errors += 1
            return await send(message)

        exc_type = None
        try:
            return await app(self, scope, receive, capture)
        except BaseException as exc:
            exc_type = type(exc)
            raise
        finally:
            root.close(exc_type)
            webrequest.leave(token)

    serve.__wrapped__ = app
    return serve
