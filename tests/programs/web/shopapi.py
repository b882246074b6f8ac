"""A FastAPI service: sync and async routes, a dependency, a background task, a streamed
body, a handled 404 and an unhandled error (500)."""

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse

import catalog

app = FastAPI()


def current_user(token: str = "anon") -> str:
    return token.upper()


def audit(event: str) -> None:
    catalog.remember(event)


@app.get("/items/{sku}")
def get_item(sku: str, user: str = Depends(current_user)) -> dict:
    try:
        return {"sku": sku, "price": catalog.price(sku), "user": user}
    except KeyError:
        raise HTTPException(404, "no such item")


@app.post("/orders/{oid}")
async def create_order(oid: int, tasks: BackgroundTasks) -> dict:
    tasks.add_task(audit, f"order {oid}")
    return {"id": oid}


@app.get("/export")
def export() -> StreamingResponse:
    return StreamingResponse(catalog.lines(), media_type="text/plain")


@app.get("/boom")
async def boom() -> float:
    return catalog.ratio(0)
