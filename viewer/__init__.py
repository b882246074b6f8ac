"""flowagent's web viewer (``flowagent view``): a small read-only Flask app over the store.

:func:`create_app` builds the app; configuration keys:

``DATA_DIR``
    the data directory ``flowagent run`` writes (its ``flowagent.db`` is opened read-only);
``TOKEN``
    when set, every request must carry it (see :mod:`.auth`); ``flowagent view`` sets one
    for any non-loopback address;
``ALLOWED_HOSTS``
    extra host names accepted without a token (loopback names always are);
``POLL_MS``
    how often pages of a live run refresh, in milliseconds.

Pages are server-rendered Jinja; each has a little vanilla JavaScript for interaction and live
refresh. Every asset, including the graph library, is served from the package: no network.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, url_for

__all__ = ["create_app"]

# Scripts and styles only from the app itself: even if some data slipped past escaping, a
# browser would refuse to run it. The one inline style allowed, by its hash, is the rule
# Cytoscape.js injects for its container (".__________cytoscape_container { position:
# relative; }"); styles it sets through the CSSOM are not affected by the policy.
CYTOSCAPE_STYLE = "'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='"
CSP = ("default-src 'self'; script-src 'self'; worker-src 'self'; "
       f"style-src 'self' {CYTOSCAPE_STYLE}; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _asset_version(static_dir: str) -> str:
    """Changes whenever an asset changes, so browsers may cache assets for a long time."""
    newest = 0.0
    for root, _dirs, files in os.walk(static_dir):
        for name in files:
            newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
    return format(int(newest), "x")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The viewer app; ``config`` overrides the defaults (tests pass ``DATA_DIR``)."""
    app = Flask(__name__)
    app.config.from_mapping(DATA_DIR=".flowagent", TOKEN=None, ALLOWED_HOSTS=(), POLL_MS=2000,
                            SEND_FILE_MAX_AGE_DEFAULT=86400)
    if config:
        app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]

    from . import api, auth, data, errors, exports, fmt, pages

    auth.init_app(app)
    data.init_app(app)
    errors.init_app(app)
    fmt.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    app.register_blueprint(exports.bp)
    from . import metrics

    app.register_blueprint(metrics.bp)

    version = _asset_version(app.static_folder or "")

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=version)

    app.add_template_global(asset, "asset")
    app.add_template_global(app.config["POLL_MS"], "poll_ms")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.mimetype in ("application/json", "text/html"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
