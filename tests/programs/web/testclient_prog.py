"""Drives the FastAPI app in-process with Starlette's TestClient from main()."""

from fastapi.testclient import TestClient

from shopapi import app


def main():
    client = TestClient(app, raise_server_exceptions=False)
    codes = [client.get("/items/A1").status_code, client.get("/items/NOPE").status_code,
             client.post("/orders/7").status_code, client.get("/boom").status_code,
             client.request("BREW", "/items/A1").status_code,
             client.get("/no/such/" + "x" * 5000).status_code]
    body = client.get("/export").text
    print(*codes, body.replace("\n", ";"))


main()
