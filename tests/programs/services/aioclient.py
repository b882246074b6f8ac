"""Calls the stock service with aiohttp and httpx (async), then with urllib.request,
http.client and httpx's sync client, letting the agent add the trace headers or sending the
program's own traceparent, and prints the traceparent each request arrived with."""

import asyncio
import http.client
import json
import sys
import urllib.request

import aiohttp
import httpx

BASE = f"http://127.0.0.1:{sys.argv[1]}"
OWN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333{}-01"


async def with_aiohttp(headers):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{BASE}/stock/3", headers=headers) as r:
            return (await r.json())["traceparent"]


async def with_httpx(headers):
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{BASE}/stock/4", headers=headers)
        return r.json()["traceparent"]


def with_urllib():
    with urllib.request.urlopen(f"{BASE}/stock/5", timeout=30) as r:
        return json.loads(r.read())["traceparent"]


def with_http_client(traceparent):
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
    try:
        conn.request("GET", "/stock/6", headers={"TraceParent": traceparent})
        return json.loads(conn.getresponse().read())["traceparent"]
    finally:
        conn.close()


def with_httpx_sync():
    with httpx.Client() as client:
        return client.get(f"{BASE}/stock/7").json()["traceparent"]


async def main():
    seen = [await with_aiohttp({}), await with_aiohttp({"traceparent": OWN.format(1)}),
            await with_httpx({}), await with_httpx({"traceparent": OWN.format(2)})]
    seen += [with_urllib(), with_http_client(OWN.format(3)), with_httpx_sync()]
    print(*seen)


asyncio.run(main())
