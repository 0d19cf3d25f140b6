"""The long-lived text/event-stream response for one subscriber.

Per open stream the worker holds the request's own task (it writes the stream), one
task that watches for the client going away, and a Subscription (a cursor into the
worker's event log, broker.py). Keepalives come from one sweep per worker and
interval (``KeepaliveSweep``): a heap of when each stream falls due, and one timer for
the earliest, instead of a timer per stream.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sse_app import sse
from sse_app.broker import Broker, Subscription
from sse_app.redis_broker import REPLAY_PAGE, BrokerUnavailable, RedisBroker

# After the subscription is closed (shutdown, overflow) the writer normally finishes
# at once; it only lingers when it is blocked writing to a client that stopped
# reading, and then we abandon that response instead of waiting for the peer.
WRITER_GRACE_SECONDS = 1.0
# How often a resuming stream asks an unreachable broker again (keepalives go on).
BROKER_RETRY_SECONDS = 0.5
# A stream due within this much is written in the same sweep (one timer, not two).
SWEEP_SLACK_SECONDS = 0.001


class KeepaliveSweep:
    """Flags every stream idle for a whole interval and wakes it to write a keepalive.

    One per event loop and interval. Streams enter the heap after a write, due one
    interval later; an entry whose stream wrote meanwhile (an event) is pushed back to
    its new time when it comes up, so a write costs no heap work.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._heap: list[tuple[float, int, Subscription]] = []
        self._order = itertools.count()  # ties never compare two Subscriptions
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, sub: Subscription) -> None:
        """Due one interval after ``sub.last_write`` (no-op while already in the heap)."""
        if sub.scheduled:
            return
        sub.scheduled = True
        due = sub.last_write + self._interval
        heapq.heappush(self._heap, (due, next(self._order), sub))
        if due < self._timer_at:
            self._arm(due)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._timer, self._timer_at = None, math.inf
        heap = self._heap
        now = self._loop.time() + SWEEP_SLACK_SECONDS
        while heap and heap[0][0] <= now:
            sub = heapq.heappop(heap)[2]
            sub.scheduled = False
            if sub.closed:
                continue
            due = sub.last_write + self._interval
            if due > now:  # wrote since it was scheduled: not idle for an interval yet
                sub.scheduled = True
                heapq.heappush(heap, (due, next(self._order), sub))
                continue
            sub.keepalive_due = True
            sub.wake()
        if heap:
            self._arm(heap[0][0])


_SWEEPS: dict[tuple[asyncio.AbstractEventLoop, float], KeepaliveSweep] = {}


def keepalive_sweep(interval: float) -> KeepaliveSweep:
    """The running loop's sweep for ``interval`` (created on first use)."""
    loop = asyncio.get_running_loop()
    sweep = _SWEEPS.get((loop, interval))
    if sweep is None:
        for key in [key for key in _SWEEPS if key[0].is_closed()]:
            del _SWEEPS[key]  # a loop that is gone (tests run servers on several)
        sweep = _SWEEPS[(loop, interval)] = KeepaliveSweep(loop, interval)
    return sweep


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        broker: Broker | RedisBroker,
        *,
        retry_ms: int,
        keepalive_interval: float,
        last_event_id: int | None = None,
        retry_jitter_ms: int = 0,
    ) -> None:
        self.broker = broker
        # Each stream its own retry: when many streams end at once (a reload), their
        # clients then come back spread over the jitter instead of in the same second.
        self.retry_ms = retry_ms + (random.randint(0, retry_jitter_ms) if retry_jitter_ms else 0)
        self.keepalive_interval = keepalive_interval
        self.last_event_id = last_event_id
        self.status_code = 200
        self.background = None
        self._abandoned = False
        self.init_headers(
            {
                # An EventSource must never be served from a cache.
                "Cache-Control": "no-cache",
                # Tells nginx not to buffer this response even where proxy_buffering is on.
                "X-Accel-Buffering": "no",
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        grace: list[asyncio.TimerHandle] = []

        def abandon() -> None:
            # Still writing a grace period after the close: blocked on a stalled peer.
            # Returning without finishing the response makes the server close the
            # connection (it logs that as an error).
            self._abandoned = True
            task.cancel()

        def on_close() -> None:
            grace.append(loop.call_later(WRITER_GRACE_SECONDS, abandon))

        # Subscribe before anything is sent: from here on no published event is missed.
        sub = self.broker.subscribe(self.last_event_id)
        sub.on_close = on_close
        if sub.closed:
            on_close()
        watcher = loop.create_task(_watch_disconnect(receive, sub))
        try:
            await self._write(send, sub, keepalive_sweep(self.keepalive_interval))
        except asyncio.CancelledError:
            if not self._abandoned or task.uncancel() > 0:
                raise  # cancelled by someone else too (the server)
        finally:
            sub.on_close = None
            self.broker.unsubscribe(sub)
            watcher.cancel()
            for timer in grace:
                timer.cancel()

    def _wrote(self, sub: Subscription, sweep: KeepaliveSweep) -> None:
        sub.last_write = asyncio.get_running_loop().time()
        sub.keepalive_due = False
        sweep.schedule(sub)

    async def _write(self, send: Send, sub: Subscription, sweep: KeepaliveSweep) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # The first bytes go out on their own and at once: proxies and browsers see a
        # live response instead of an empty one that looks stalled.
        await send(_body(sse.OK))
        await send(_body(sse.retry(self.retry_ms)))

        # The last id sent (None: none yet). Ids only grow, in-process and in the broker's
        # one global order, so a live event at or below it was already replayed.
        last_sent: int | None = None
        for missed in sub.backlog:
            await send(_body(sse.event(missed.id, missed.data, missed.name)))
            last_sent = missed.id
        self._wrote(sub, sweep)
        if sub.resume_after is not None and isinstance(self.broker, RedisBroker):
            last_sent = await self._replay_from_broker(
                send, sub, sweep, self.broker, sub.resume_after
            )

        while sub.closed_reason not in ("disconnect", "overflow"):
            event = sub.pop()
            if event is not None:
                if last_sent is None or event.id > last_sent:
                    await send(_body(sse.event(event.id, event.data, event.name)))
                    last_sent = event.id
                    self._wrote(sub, sweep)
                continue
            if sub.closed:  # shutdown: the events it had were flushed above, now end
                break
            if sub.keepalive_due:
                await send(_body(sse.KEEPALIVE))
                self._wrote(sub, sweep)
                continue
            await sub.wait()

        # A clean end of the chunked body: the browser reconnects after `retry` ms.
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _replay_from_broker(
        self,
        send: Send,
        sub: Subscription,
        sweep: KeepaliveSweep,
        broker: RedisBroker,
        after: int,
    ) -> int | None:
        """Send what the client missed after ``after``; returns the id it now holds.

        While the broker is unreachable the stream waits with its keepalives and asks
        again; events published meanwhile queue up in ``sub`` (or close it on overflow,
        and the client resumes by Last-Event-ID).
        """
        start: int | None = None
        floor = after
        while not sub.closed:
            try:
                if start is None:
                    start, floor = await broker.replay_start(after)
                page = await broker.read_after(start)
            except BrokerUnavailable:
                await self._pause(send, sub, sweep, BROKER_RETRY_SECONDS)
                continue
            for event in page:
                if event.id > floor:
                    await send(_body(sse.event(event.id, event.data, event.name)))
                    floor = event.id
                    self._wrote(sub, sweep)
                start = event.id
            if len(page) < REPLAY_PAGE:
                break
        return floor

    async def _pause(
        self, send: Send, sub: Subscription, sweep: KeepaliveSweep, seconds: float
    ) -> None:
        """Wait ``seconds`` (less if the stream closes), keeping the keepalives on time."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not sub.closed and (now := loop.time()) < end:
            if sub.keepalive_due:
                await send(_body(sse.KEEPALIVE))
                self._wrote(sub, sweep)
                continue
            # live events wait in the log until the replay is done
            await sub.wait(end - now, events=False)


def route_events_directly(
    app: ASGIApp,
    path: str,
    respond: Callable[[Request], Awaitable[Response]],
    headers: list[tuple[bytes, bytes]],
) -> ASGIApp:
    """``app``, with GET ``path`` answered by ``respond`` straight from the server.

    Middleware and router frames (and their closures) live as long as the request does:
    for an event stream, hours, and about 6 KB of a stream's 20 (bench/app_streams.py).
    ``headers`` are added to that response: what the skipped middleware would add.
    Everything else, the lifespan and other methods on ``path`` too, goes to ``app``.
    """

    async def direct(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            route = scope["path"]
            root = scope.get("root_path", "")
            if root and route.startswith(root):
                route = route[len(root) :]
            if route == path:
                response = await respond(Request(scope, receive))
                response.raw_headers.extend(headers)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return direct


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
