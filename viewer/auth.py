"""Who may talk to the viewer: a token when one is set, otherwise only loopback host names.

With a token (required by ``flowagent view`` for any non-loopback address), every request must
carry it: ``?token=`` once (it is then kept in an HttpOnly cookie), or an
``Authorization: Bearer`` header for scripts. Without a token the server listens on loopback
only, and requests must name a loopback host: a web page on another site cannot then read the
viewer through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, abort, current_app, g, request

COOKIE = "flowagent_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8765
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _supplied_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.args.get("token") or request.cookies.get(COOKIE)


def _check() -> None:
    token = current_app.config.get("TOKEN")
    if token:
        supplied = _supplied_token()
        if not supplied or not hmac.compare_digest(supplied.encode(), token.encode()):
            abort(401, description="this viewer needs its access token: open the URL that "
                                   "'flowagent view' printed (it ends with ?token=...)")
        if request.args.get("token"):
            g.flowagent_set_cookie = True
        return
    allowed = LOOPBACK_NAMES | set(current_app.config.get("ALLOWED_HOSTS") or ())
    if _host_name(request.host).lower() not in allowed:
        abort(403, description="this viewer only answers requests for a loopback host name "
                               "(localhost, 127.0.0.1); use 'flowagent view --token' to serve "
                               "other names")


def _set_cookie(response: Response) -> Response:
    if g.get("flowagent_set_cookie"):
        response.set_cookie(COOKIE, current_app.config["TOKEN"], httponly=True,
                            samesite="Strict", path="/")
    return response


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.after_request(_set_cookie)
