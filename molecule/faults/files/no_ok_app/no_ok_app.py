"""Pure ASGI: GET /notify/events streams ``:keepalive`` comments but never ``:ok``.

Everything else is healthy on purpose, so that verification fails only on the first line
(``first_comment``): 200 with text/event-stream, a first body byte at once (a keepalive,
where ``:ok`` belongs), a keepalive every SSE_KEEPALIVE_INTERVAL seconds, and
GET /version answering SSE_APP_VERSION like the reference app.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

KEEPALIVE = b":keepalive\n\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        if scope["method"] == "GET" and scope["path"] == "/notify/events":
            await _events(receive, send)
        elif scope["method"] == "GET" and scope["path"] == "/version":
            version = os.environ.get("SSE_APP_VERSION", "").strip() or "0.0.1"
            await _respond(send, 200, "application/json", json.dumps({"version": version}))
        else:
            await _respond(send, 404, "text/plain", "not found\n")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, status: int, content_type: str, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


async def _events(receive: Receive, send: Send) -> None:
    interval = float(os.environ.get("SSE_KEEPALIVE_INTERVAL", "").strip() or "30")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ],
        }
    )
    disconnected = asyncio.ensure_future(_disconnect(receive))
    try:
        # The fault: the stream starts with a keepalive where ":ok" belongs.
        while not disconnected.done():
            await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
            await asyncio.wait({disconnected}, timeout=interval)
    finally:
        disconnected.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
