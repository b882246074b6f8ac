"""The pricing service (FastAPI under uvicorn): each price asks the stock service with
httpx's async client."""

import os

import httpx
from fastapi import FastAPI

app = FastAPI()
STOCK = os.environ["STOCK_URL"]


def price_of(stock):
    return 10 * stock["count"]


@app.get("/price/{oid}")
async def price(oid: int):
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{STOCK}/stock/{oid}", params={"token": "secret"})
    stock = r.json()
    return {"price": price_of(stock), "seen": stock["traceparent"]}

