"""A FastAPI websocket driven in-process by TestClient."""

from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
import catalog

app = FastAPI()

@app.websocket("/ws/{room}")
async def chat(ws: WebSocket, room: str):
    await ws.accept()
    msg = await ws.receive_text()
    await ws.send_text(str(catalog.price(msg)))
    await ws.close()

def main():
    c = TestClient(app)
    with c.websocket_connect("/ws/lobby") as ws:
        ws.send_text("A1")
        print(ws.receive_text())

main()
