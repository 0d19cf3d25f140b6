"""The long-lived text/event-stream response for one subscriber."""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sse_app import sse
from sse_app.broker import Broker, Subscription

# After the subscription is closed (shutdown, overflow) the writer normally finishes
# at once; it only lingers when it is blocked writing to a client that stopped
# reading, and then we abandon that response instead of waiting for the peer.
WRITER_GRACE_SECONDS = 1.0


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        broker: Broker,
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
        last_write = loop.time()
        replayed: set[int] = set()
        for missed in sub.backlog:
            await send(_body(sse.event(missed.id, missed.data, missed.name)))
            replayed.add(missed.id)
            last_write = loop.time()

        while sub.closed_reason not in ("disconnect", "overflow"):
            event = sub.pop()
            if event is not None:
                # Dedupe against the replayed backlog in case an event reached both. Not
                # by "id > last sent": a peer's event may arrive after a newer local one.
                if event.id not in replayed:
                    await send(_body(sse.event(event.id, event.data, event.name)))
                    last_write = loop.time()
                continue
            if sub.closed:  # shutdown: queued events were flushed above, now end
                break
            idle_deadline = last_write + self.keepalive_interval
            if not await sub.wait(max(0.0, idle_deadline - loop.time())):
                await send(_body(sse.KEEPALIVE))
                last_write = loop.time()

        # A clean end of the chunked body: the browser reconnects after `retry` ms.
        await send({"type": "http.response.body", "body": b"", "more_body": False})


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
