"""ASGI app `api`: `GET /updates/stream` streams Server-Sent Events (Starlette)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class VersionHeader:
    """Pure ASGI middleware: `X-App-Version` on every HTTP answer (a streaming one too,
    with nothing between the app and the client that could hold its body back)."""

    def __init__(self, app: ASGIApp, release: str) -> None:
        self.app = app
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-App-Version"] = self.release
            await send(message)

        await self.app(scope, receive, send_with_header)


def _seconds(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if not 0 < value <= 86400:
        raise ValueError(f"{name} must be in (0, 86400], got {value}")
    return value


def build() -> Starlette:
    keepalive = _seconds("SSE_KEEPALIVE_INTERVAL", 30)
    tick = _seconds("TICK_SECONDS", 1)
    release = os.environ.get("SSE_APP_VERSION", "unknown")

    async def updates(request: Request) -> AsyncIterator[str]:
        yield ":ok\n\n"
        count = 0
        next_tick = time.monotonic() + tick
        last_write = time.monotonic()
        while not await request.is_disconnected():
            now = time.monotonic()
            wake = min(next_tick, last_write + keepalive)
            if wake > now:
                await asyncio.sleep(min(wake - now, 1.0))
                continue
            if now >= next_tick:
                count += 1
                data = json.dumps({"update": count, "release": release})
                yield f"id: {count}\nevent: update\ndata: {data}\n\n"
                next_tick += tick
            else:
                yield ":keepalive\n\n"
            last_write = time.monotonic()

    async def stream(request: Request) -> Response:
        return StreamingResponse(
            updates(request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def home(request: Request) -> Response:
        return PlainTextResponse("asgi-ticker example: GET /updates/stream\n")

    return Starlette(
        routes=[Route("/", home), Route("/updates/stream", stream)],
        middleware=[Middleware(VersionHeader, release=release)],
    )


api = build()
