"""Calls the stock service with aiohttp and httpx (async), once letting the agent add the
trace headers and once with the program's own traceparent, and prints what arrived."""

import asyncio
import sys

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


async def main():
    seen = [await with_aiohttp({}), await with_aiohttp({"traceparent": OWN.format(1)}),
            await with_httpx({}), await with_httpx({"traceparent": OWN.format(2)})]
    print(*seen)


asyncio.run(main())
