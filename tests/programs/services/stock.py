"""The stock service (Flask on werkzeug): answers with the trace headers it received."""

import signal
import sys

from flask import Flask, jsonify, request

app = Flask(__name__)


def count_for(oid):
    return oid % 5 + 1


@app.get("/stock/<int:oid>")
def stock(oid):
    return jsonify(count=count_for(oid), traceparent=request.headers.get("traceparent"),
                   tracestate=request.headers.get("tracestate"))


def stop(signum, frame):
    sys.exit(0)  # a clean exit, as a service manager expects on SIGTERM


def main():
    signal.signal(signal.SIGTERM, stop)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)


if __name__ == "__main__":
    main()
