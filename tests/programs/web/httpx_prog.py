"""Drives the FastAPI app in-process with httpx's ASGITransport: concurrent requests in one
event loop, each its own session."""

import asyncio
import httpx
from shopapi import app

async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await asyncio.gather(c.get("/items/A1"), c.get("/items/B2"), c.post("/orders/3"))
        print([x.status_code for x in r])

asyncio.run(main())
