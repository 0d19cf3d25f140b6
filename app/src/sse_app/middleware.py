"""Stamp every response with the running release."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class VersionHeaderMiddleware:
    # Plain ASGI rather than BaseHTTPMiddleware: that one would sit between the event
    # stream and the socket and is known to interfere with streaming responses.

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-App-Version"] = self.version
            await send(message)

        await self.app(scope, receive, send_with_version)
