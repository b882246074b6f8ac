"""The front service (Flask on werkzeug): a checkout asks the pricing service twice."""

import os
import signal
import sys

import requests
from flask import Flask, jsonify

app = Flask(__name__)
PRICING = os.environ["PRICING_URL"]


def quote(oid):
    r = requests.get(f"{PRICING}/price/{oid}", timeout=30)
    return r.json()


@app.get("/checkout/<int:oid>")
def checkout(oid):
    first = quote(oid)
    second = quote(oid + 1)
    return jsonify(total=first["price"] + second["price"], seen=first["seen"])


def stop(signum, frame):
    sys.exit(0)  # a clean exit, as a service manager expects on SIGTERM


def main():
    signal.signal(signal.SIGTERM, stop)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)


if __name__ == "__main__":
    main()
