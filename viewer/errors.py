"""Error pages: HTML for pages, JSON under ``/api/`` and ``/health``; never a traceback.

Unknown ids are 404s with a plain message; a missing database is a 503 that explains how to
record data (the page refreshes itself, so it comes alive once ``flowagent run`` starts); any
other failure is a 500 whose details go to the server's log only.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from flowagent.errors import StoreError


def wants_json() -> bool:
    path = request.path
    return path.startswith("/api/") or path == "/api" or path == "/health"


def _respond(code: int, title: str, message: str, refresh: bool = False) -> Response:
    if wants_json():
        response = jsonify({"error": title, "message": message, "status": code})
    else:
        response = Response(render_template("error.html", code=code, title=title,
                                            message=message, refresh=refresh),
                            mimetype="text/html")
    response.status_code = code
    return response


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    if code >= 500:
        return _server_error(exc)
    response = _respond(code, exc.name, exc.description or exc.name)
    if code == 405:
        response.headers["Allow"] = "GET, HEAD"
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="flowagent"'
    return response


def _no_store(exc: StoreError) -> Response:
    return _respond(503, "No data yet", str(exc), refresh=True)


def _server_error(exc: Exception) -> Response:
    original = getattr(exc, "original_exception", None) or exc
    if not isinstance(original, HTTPException):
        from flask import current_app

        current_app.logger.error("error serving %s", request.path, exc_info=original)
    return _respond(500, "Internal error",
                    "the viewer could not show this; the details are in its log")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreError, _no_store)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(Exception, _server_error)
