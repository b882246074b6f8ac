"""Serves the Django site through its WSGI handler with wsgiref from main()."""

import os
import signal
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def stop(signum, frame):
    sys.exit(0)  # a clean exit, as a service manager expects on SIGTERM


def main(port):
    signal.signal(signal.SIGTERM, stop)
    server = make_server("127.0.0.1", port, get_wsgi_application(), handler_class=QuietHandler)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
