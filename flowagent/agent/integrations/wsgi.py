"""The WSGI middleware: one session per request, whichever framework or server runs it.

:func:`wrap_app` turns a WSGI callable into one that opens the request's root, records the
status given to ``start_response``, and closes the root when the response is over: at once
for a body produced before the app returned, else (a streaming response, as the framework
says) when the body iterable is exhausted or closed (PEP 3333 requires servers to close it),
so a streamed body's generator runs inside the request.
"""

from __future__ import annotations

import functools

from .. import recorder
from . import webrequest

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator


def _status_code(status: Any) -> int:
    try:
        return int(str(status)[:3])
    except ValueError:
        return 0


_status_codes: dict[str, int] = {}  # status line -> code: a server sees few distinct ones


class _Body:
    """A response body the server iterates after the app returned: each step runs with the
    request's root current, and closing it ends the request."""

    __slots__ = ("_root", "_body", "_it")

    def __init__(self, root: webrequest.RequestRoot, body: Iterable[bytes]) -> None:
        self._root = root
        self._body = body
        self._it: Iterator[bytes] | None = None

    def __iter__(self) -> "_Body":
        return self

    def __next__(self) -> Any:
        it = self._it
        if it is None:
            it = self._it = iter(self._body)
        outer = recorder._get()
        recorder._set(self._root.frame)
        try:
            return next(it)
        except StopIteration:
            self._root.close(None)
            raise
        except BaseException as exc:
            self._root.close(type(exc))
            raise
        finally:
            recorder._set(outer)

    def close(self) -> None:
        outer = recorder._get()
        recorder._set(self._root.frame)
        exc_type = None
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            exc_type = type(exc)
            raise
        finally:
            self._root.close(exc_type)
            if recorder._get() is self._root.frame:
                recorder._set(outer)


def wrap_app(app: Callable[..., Any]) -> Callable[..., Any]:
    """A WSGI application method (``__call__`` or ``wsgi_app(self, environ,
    start_response)``) that serves each request as its own session. The wrapper keeps the
    exact parameters (servers and frameworks may inspect them)."""

    @functools.wraps(app)
    def serve(self: Any, environ: Any, start_response: Any) -> Any:
        if type(environ) is dict:
            root, token = webrequest.open_request(environ.get("REQUEST_METHOD"),
                                                  environ.get("HTTP_TRACEPARENT"),
                                                  environ.get("HTTP_TRACESTATE"))
        else:
            root, token = webrequest.open_request(None)
        if root is None:
            return app(self, environ, start_response)

        def capture(status: Any, headers: Any, *exc_info: Any) -> Any:
            code = _status_codes.get(status) if type(status) is str else None
            if code is None:
                code = _status_code(status)
                if type(status) is str and len(_status_codes) < 256:
                    _status_codes[status] = code
            root.status = code
            return start_response(status, headers, *exc_info)

        try:
            body = app(self, environ, capture)
        except BaseException as exc:
            root.close(type(exc))
            webrequest.leave(token)
            raise
        webrequest.leave(token)
        if not (root.streaming or getattr(body, "streaming", False) is True) \
                or isinstance(body, (list, tuple)) or _is_file_wrapper(environ, body):
            # A body that was produced before the app returned (most are: a streaming one is
            # marked by the framework) ends the request now; a test client that never reads
            # or closes it must not leave the request open.
            root.close(None)
            return body
        # The root stays open (and current nowhere) until the server closes the body.
        if recorder._get() is root.frame:
            recorder._set(root.frame[recorder.OUTER])
        return _Body(root, body)

    serve.__wrapped__ = app
    return serve


def _is_file_wrapper(environ: dict[str, Any], body: Any) -> bool:
    # A server's sendfile wrapper must reach the server as itself (it checks its type).
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(body, wrapper)
