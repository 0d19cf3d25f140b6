"""The long-lived text/event-stream response for one subscriber."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sse_app import sse
from sse_app.broker import Broker, Subscription
from sse_app.redis_broker import REPLAY_PAGE, BrokerUnavailable, RedisBroker

# After the subscription is closed (shutdown, overflow) the writer normally finishes
# at once; it only lingers when it is blocked writing to a client that stopped
# reading, and then we abandon that response instead of waiting for the peer.
WRITER_GRACE_SECONDS = 1.0
# How often a resuming stream asks an unreachable broker again (keepalives go on).
BROKER_RETRY_SECONDS = 0.5


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        broker: Broker | RedisBroker,
        *,
        retry_ms: int,
        keepalive_interval: float,
        last_event_id: int | None = None,
    ) -> None:
        self.broker = broker
        self.retry_ms = retry_ms
        self.keepalive_interval = keepalive_interval
        self.last_event_id = last_event_id
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                # An EventSource must never be served from a cache.
                "Cache-Control": "no-cache",
                # Tells nginx not to buffer this response even where proxy_buffering is on.
                "X-Accel-Buffering": "no",
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Subscribe before anything is sent: from here on no published event is missed.
        sub = self.broker.subscribe(self.last_event_id)
        writer = asyncio.create_task(self._write(send, sub))
        watcher = asyncio.create_task(_watch_disconnect(receive, sub))
        closed = asyncio.create_task(sub.wait_closed())
        try:
            await asyncio.wait({writer, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not writer.done():
                await asyncio.wait({writer}, timeout=WRITER_GRACE_SECONDS)
            if not writer.done():
                # Blocked on a stalled peer. Returning without finishing the response
                # makes the server close the connection (it logs that as an error).
                writer.cancel()
                await asyncio.wait({writer})
            if not writer.cancelled():
                writer.result()  # surface the writer's own errors
        finally:
            self.broker.unsubscribe(sub)
            for task in (writer, watcher, closed):
                task.cancel()

    async def _write(self, send: Send, sub: Subscription) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # The first bytes go out on their own and at once: proxies and browsers see a
        # live response instead of an empty one that looks stalled.
        await send(_body(sse.OK))
        await send(_body(sse.retry(self.retry_ms)))

        loop = asyncio.get_running_loop()
        self._last_write = loop.time()
        replayed: set[int] = set()
        for missed in sub.backlog:
            await send(_body(sse.event(missed.id, missed.data, missed.name)))
            replayed.add(missed.id)
            self._last_write = loop.time()
        # With a broker: the last id sent, in the one global order (None: none yet).
        last_sent: int | None = None
        if sub.resume_after is not None and isinstance(self.broker, RedisBroker):
            last_sent = await self._replay_from_broker(send, sub, self.broker, sub.resume_after)

        while sub.closed_reason not in ("disconnect", "overflow"):
            event = sub.pop()
            if event is not None:
                if sub.ordered:
                    # the live queue was filled from before the replay read: skip overlap
                    duplicate = last_sent is not None and event.id <= last_sent
                else:
                    # Dedupe against the replayed backlog in case an event reached both.
                    # Not by "id > last sent": a peer's event may arrive after a newer one.
                    duplicate = event.id in replayed
                if not duplicate:
                    await send(_body(sse.event(event.id, event.data, event.name)))
                    last_sent = event.id
                    self._last_write = loop.time()
                continue
            if sub.closed:  # shutdown: queued events were flushed above, now end
                break
            idle_deadline = self._last_write + self.keepalive_interval
            if not await sub.wait(max(0.0, idle_deadline - loop.time())):
                await send(_body(sse.KEEPALIVE))
                self._last_write = loop.time()

        # A clean end of the chunked body: the browser reconnects after `retry` ms.
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _replay_from_broker(
        self, send: Send, sub: Subscription, broker: RedisBroker, after: int
    ) -> int | None:
        """Send what the client missed after ``after``; returns the id it now holds.

        While the broker is unreachable the stream waits with its keepalives and asks
        again; events published meanwhile queue up in ``sub`` (or close it on overflow,
        and the client resumes by Last-Event-ID).
        """
        loop = asyncio.get_running_loop()
        start: int | None = None
        floor = after
        while not sub.closed:
            try:
                if start is None:
                    start, floor = await broker.replay_start(after)
                page = await broker.read_after(start)
            except BrokerUnavailable:
                await self._pause(send, sub, BROKER_RETRY_SECONDS)
                continue
            for event in page:
                if event.id > floor:
                    await send(_body(sse.event(event.id, event.data, event.name)))
                    floor = event.id
                    self._last_write = loop.time()
                start = event.id
            if len(page) < REPLAY_PAGE:
                break
        return floor

    async def _pause(self, send: Send, sub: Subscription, seconds: float) -> None:
        """Wait ``seconds`` (less if the stream closes), keeping the keepalives on time."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not sub.closed and (now := loop.time()) < end:
            keepalive_at = self._last_write + self.keepalive_interval
            if now >= keepalive_at:
                await send(_body(sse.KEEPALIVE))
                self._last_write = now
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(sub.wait_closed(), min(end, keepalive_at) - now)


async def _watch_disconnect(receive: Receive, sub: Subscription) -> None:
    # Without this a vanished client is only noticed at the next write, and it would
    # keep counting as a subscriber until then.
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            sub.close("disconnect")
            return


def _body(chunk: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": chunk, "more_body": True}
