"""ASGI entry point: `sse_app.main:app`."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from sse_app import ids, sse
from sse_app.broker import Broker
from sse_app.middleware import VersionHeaderMiddleware
from sse_app.redis_broker import RETRY_AFTER_S, BrokerUnavailable, RedisBroker
from sse_app.settings import Settings
from sse_app.shutdown import on_shutdown_signal
from sse_app.stream import EventStreamResponse, route_events_directly

# Publishing is for small notifications; a cap keeps one request from pinning memory
# in every subscriber's queue and in the replay buffer.
MAX_PUBLISH_BYTES = 64 * 1024
MAX_EVENT_NAME = 100

log = logging.getLogger("sse_app")

PAGE = files("sse_app").joinpath("page.html").read_text(encoding="utf-8")


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = Settings.from_env() if settings is None else settings
    local = Broker(settings.replay_buffer, settings.subscriber_queue)
    shared = (
        RedisBroker(
            settings.broker_url,
            settings.broker_stream,
            settings.broker_maxlen,
            settings.replay_buffer,
            settings.subscriber_queue,
        )
        if settings.broker_enabled
        else None
    )
    broker: Broker | RedisBroker = local if shared is None else shared
    if settings.peers_ignored:
        # one release of notice: the peer forwarding is gone (issue 17)
        log.warning(
            "SSE_PEERS is deprecated and ignored (the forwarding between backends is gone;"
            " the variable goes away in the next release): share events through a broker"
            " instead (SSE_BROKER_URL, Ansible: sse_backend_broker_url)"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The signal hook is what actually ends streams on SIGTERM (the server only
        # runs the lifespan shutdown below after every response has finished).
        if shared is not None:
            await shared.start()  # never waits for the broker: the app starts without it
        with on_shutdown_signal(broker.close):
            yield
            broker.close()
            if shared is not None:
                await shared.aclose()

    async def events(request: Request) -> Response:
        return EventStreamResponse(
            broker,
            retry_ms=settings.retry_ms,
            retry_jitter_ms=settings.retry_jitter_ms,
            keepalive_interval=settings.keepalive_interval,
            last_event_id=_last_event_id(request),
        )

    async def publish(request: Request) -> Response:
        if not settings.publishing_enabled:
            return _error(403, "publishing is disabled (SSE_PUBLISH_TOKEN is not set)")
        if not _authorized(request, settings.publish_token):
            return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PUBLISH_BYTES:
                return _error(413, f"body larger than {MAX_PUBLISH_BYTES} bytes")
        try:
            name, data = _parse_publish(body)
        except ValueError as exc:
            return _error(400, str(exc))

        if shared is not None:
            try:
                event, delivered = await shared.publish(data, name)
            except BrokerUnavailable:
                return _error(
                    503,
                    "the event broker is unavailable, publish again later",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
        elif local.closed:
            # Shutting down: an event accepted now would live only in this process and
            # reach no stream (they have ended); the publisher sends it again after the
            # restart. (With a broker the event is in the broker's log: accepted above.)
            return _error(
                503,
                "this backend is shutting down, publish again later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        else:
            event, delivered = local.publish(data, name)
        return JSONResponse({"id": event.id, "subscribers": delivered}, status_code=202)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        if shared is not None:
            # 200 either way: the worker serves streams (with keepalives) without the
            # broker; "status" and "broker" say whether events flow.
            status = "ok" if shared.available else "broker_down"
            return JSONResponse({"status": status, "broker": shared.health()})
        return JSONResponse({"status": "ok"})  # no broker: events live in this process

    async def version(request: Request) -> Response:
        return JSONResponse({"version": settings.app_version})

    routed = Starlette(
        routes=[
            Route("/notify/events", events, methods=["GET"]),
            Route("/notify/publish", publish, methods=["POST"]),
            Route("/notify/", page, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
        ],
        middleware=[Middleware(VersionHeaderMiddleware, version=settings.app_version)],
        lifespan=lifespan,
    )
    # the stream past the middleware and router: their frames would live as long as it
    version_header = (b"x-app-version", settings.app_version.encode())
    return route_events_directly(routed, "/notify/events", events, [version_header])


def _authorized(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time on bytes: compare_digest on str rejects non-ASCII input.
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def _last_event_id(request: Request) -> int | None:
    # Browsers send the header on reconnect; the query form lets a fresh page (or a
    # polyfill that cannot set headers) resume too.
    # Anything but one of our ids (e.g. -1, "abc", 5,000 digits) gets live events only;
    # an id older than the replay buffer gets what the buffer holds (SSE_REPLAY_BUFFER).
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    return ids.parse_id(raw) if raw else None


def _parse_publish(body: bytes) -> tuple[str | None, str]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValueError("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ValueError('body must be a JSON object like {"event": ..., "data": ...}')

    name = payload.get("event")
    if name is not None and not (
        isinstance(name, str) and 0 < len(name) <= MAX_EVENT_NAME and sse.valid_field_value(name)
    ):
        raise ValueError(f'"event" must be a single-line string of 1-{MAX_EVENT_NAME} chars')

    if "data" not in payload:
        raise ValueError('"data" is required')
    data = payload["data"]
    if not isinstance(data, str):
        data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if data == "":
        # EventSource silently drops events whose data is empty; refuse rather than lie.
        raise ValueError('"data" must not be empty')
    return name, data


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


app = create_app()
