"""``flowagent view``: serve the web viewer over the store that ``flowagent run`` writes.

The first line on stdout is the URL (``flowagent view: http://127.0.0.1:8765/``), flushed before
serving, so scripts and tests can start the viewer with ``--port 0`` and read where it is.
The viewer binds 127.0.0.1 by default; any other address needs a token (``--token T``, or one
is generated and shown in the URL), because the recorded shapes describe the program's data.
Flask is imported only when the command runs, so ``flowagent --help`` stays fast.
``python -m flowagent.cli.view`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import sys
import threading
from typing import Any, TextIO

from ..errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``view`` on the CLI's subparsers."""
    sp = subparsers.add_parser("view", help="open the web viewer on the recorded runs")
    sp.add_argument("--data-dir", metavar="DIR", help="where runs are stored (.flowagent)")
    sp.add_argument("--store", metavar="URL", help="store to read: a path, sqlite:///PATH or "
                    "postgresql://... (default: the data directory's flowagent.db)")
    sp.add_argument("--host", default=DEFAULT_HOST,
                    help="address to listen on (default 127.0.0.1; any other needs a token)")
    sp.add_argument("--port", type=int, default=DEFAULT_PORT,
                    help="port (default 8765; 0 picks a free one)")
    sp.add_argument("--open", action="store_true", help="open the viewer in a web browser")
    sp.add_argument("--token", metavar="T",
                    help="require this token on every request (generated when --host is not "
                         "a loopback address)")
    return sp


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def viewer_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _refuse_damaged_store(url: str) -> None:
    """A damaged store is one error line before anything is served, as for every command
    (a missing one is fine: the viewer shows runs as they are recorded)."""
    from ..errors import StoreDamagedError, StoreError
    from ..store.api import kind_of, open_store, sqlite_path

    if kind_of(url) == "sqlite" and not os.path.exists(sqlite_path(url)):
        return
    try:
        open_store(url, readonly=True).close()
    except StoreDamagedError:
        raise
    except StoreError:
        pass  # another version's store: the pages say so


def cmd_view(ns: argparse.Namespace, out: TextIO) -> int:
    """Serve until interrupted; returns 0 after ^C."""
    from werkzeug.serving import make_server

    from flowagent_viewer import create_app

    from ..config import load_config
    from ..store.api import kind_of, sqlite_path, store_url

    if not 0 <= ns.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {ns.port}")
    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", ns.data_dir), ("store", getattr(ns, "store", None))) if v})
    url_of_store = store_url(cfg.data_dir, cfg.store)
    token = ns.token
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty")
    if token is None and not is_loopback(ns.host):
        token = secrets.token_urlsafe(24)
    _refuse_damaged_store(url_of_store)
    app = create_app({"DATA_DIR": cfg.data_dir, "STORE": cfg.store, "TOKEN": token})
    # One line per request (the pages poll every 2 s) would drown the URL line; keep warnings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        server = make_server(ns.host, ns.port, app, threaded=True)
    except (OSError, SystemExit) as exc:
        # Werkzeug reports a busy port itself and exits; turn that into our own error.
        reason = getattr(exc, "strerror", None) or "the address is in use or not available"
        raise UsageError(f"cannot listen on {ns.host}:{ns.port}: {reason}; "
                         "pick another --port (0 picks a free one)") from None
    url = viewer_url(ns.host, server.server_port, token)
    out.write(f"flowagent view: {url}\n")
    out.flush()
    if kind_of(url_of_store) == "sqlite" and not os.path.exists(sqlite_path(url_of_store)):
        sys.stderr.write(f"flowagent view: no data in {cfg.data_dir} yet; the viewer shows runs "
                         "as soon as 'flowagent run' records one there\n")
    if ns.open:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python -m flowagent.cli.view`` (same options as ``flowagent view``)."""
    from ..errors import FlowagentError

    parser = argparse.ArgumentParser(prog="flowagent")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["view", *(sys.argv[1:] if argv is None else argv)])
    try:
        sys.exit(cmd_view(ns, sys.stdout))
    except FlowagentError as exc:
        sys.stderr.write(f"flowagent: error: {exc}\n")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
