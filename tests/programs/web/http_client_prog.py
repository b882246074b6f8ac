"""Calls a running HTTP service with urllib.request, http.client and requests from recorded
code."""

import http.client
import sys
import urllib.error
import urllib.request

import requests

BASE = f"http://127.0.0.1:{sys.argv[1]}"


def fetch(path):
    try:
        with urllib.request.urlopen(BASE + path, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def post_order(oid):
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    try:
        conn.request("POST", f"/orders/{oid}?note=secret")
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def via_requests():
    return requests.get(BASE + "/items/5", params={"q": "secret"}, timeout=10).status_code


def main():
    print(fetch("/items/42?token=abc"), fetch("/items/7"), fetch("/boom"), post_order(9),
          via_requests())


main()
