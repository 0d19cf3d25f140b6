"""Events shared by every worker and backend through a Redis stream (SSE_BROKER_URL).

A publish is one XADD (``MAXLEN ~`` bounds the log) and its id is the one Redis gives,
so there is one order for the whole fleet. Each worker runs one reader task: an XREAD
BLOCK loop from the last id it has seen, fanning what it reads out to the worker's
open streams through the same per-worker log (broker.Fanout) as the in-process broker.
A stream that resumes (Last-Event-ID) first reads what it missed with XRANGE, then goes
live from the log position it took before that read, skipping ids it already sent (one
order everywhere, so "id <= last sent" is a duplicate).

When Redis is unreachable the reader retries with backoff from the same id (nothing in
the log is skipped), streams stay open with their keepalives, publishes raise
BrokerUnavailable (a 503 with Retry-After) and ``health()`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from sse_app import ids
from sse_app.broker import Event, Fanout, Subscription

log = logging.getLogger("sse_app.redis_broker")

# XREAD BLOCK wait per call; the socket timeout is above it, so a silent broker host is
# noticed within SOCKET_TIMEOUT_S while an idle one is not mistaken for a dead one.
READ_BLOCK_MS = 2000
READ_COUNT = 500
SOCKET_TIMEOUT_S = READ_BLOCK_MS / 1000 + 3
CONNECT_TIMEOUT_S = 2.0
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 2.0
# What a publisher is told to wait during an outage (the Retry-After header).
RETRY_AFTER_S = 2
REPLAY_PAGE = 500


class BrokerUnavailable(Exception):
    """Redis did not take or give the events (down, loading, out of memory, auth)."""


class RedisBroker:
    """The Broker interface of broker.py, with Redis holding the events."""

    def __init__(
        self, url: str, stream: str, maxlen: int, replay_size: int, queue_limit: int
    ) -> None:
        self._url = url
        self._stream = stream
        self._maxlen = maxlen
        self._replay_size = replay_size
        self._fanout = Fanout(queue_limit)
        self._closed = False
        self._redis: aioredis.Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        self._position: int | None = None  # the last id the reader has seen
        self._positioned = asyncio.Event()
        self._dropping: asyncio.Task[None] | None = None
        self._state = "connecting"
        self._since = time.time()
        self._last_error: str | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the client and the reader task; waits at most CONNECT_TIMEOUT_S for Redis.

        The wait lets the reader learn where the log ends before the worker takes its
        first stream (else a stream opened in that moment could miss the first events);
        an unreachable broker only delays the start by that much.
        """
        self._redis = aioredis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            # No retries inside the client: an XADD retried after a timeout that did
            # reach Redis would add the event twice. The publisher retries on 503.
            retry=Retry(NoBackoff(), 0),
        )
        self._reader = asyncio.create_task(self._read_loop(), name="sse-broker-reader")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._positioned.wait(), CONNECT_TIMEOUT_S)

    def close(self) -> None:
        """End every open stream and refuse new ones (called from the signal hook too)."""
        self._closed = True
        self._fanout.close("shutdown")
        if self._reader is not None:
            self._reader.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    # --- the Broker interface ----------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._fanout.subscribers)

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        sub = Subscription(self._fanout)
        sub.resume_after = last_event_id
        if self._closed:
            sub.close("shutdown")
        else:
            self._fanout.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._fanout.discard(sub)

    async def publish(self, data: str, name: str | None = None) -> tuple[Event, int]:
        """Append one event; returns it and how many streams this worker holds."""
        fields = {"data": data}
        if name is not None:
            fields["event"] = name
        try:
            raw = await self._client().xadd(
                self._stream, fields, maxlen=self._maxlen, approximate=True
            )
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise BrokerUnavailable(_describe(exc)) from None
        return Event(ids.from_stream_id(raw), data, name), len(self._fanout.subscribers)

    # --- replay for a stream that resumes ----------------------------------------------

    async def replay_start(self, last_event_id: int) -> tuple[int, int]:
        """Where a resuming stream reads from, and the id at or below which it skips.

        Every entry after ``last_event_id`` when it is still in the log; when entries
        after it were trimmed (it is older than the retained log), only the newest
        ``replay_size`` events, as the in-process replay buffer would give.
        """
        try:
            info = await self._stream_info()
            last = ids.from_stream_id(info["last-generated-id"]) if info else 0
            # an id from the future (or another stream) must not hide real events
            floor = min(last_event_id, last)
            if not info or not _trimmed_after(info, last_event_id):
                return floor, floor
            if self._replay_size == 0:
                return last, last
            tail = await self._client().xrevrange(self._stream, count=self._replay_size)
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise BrokerUnavailable(_describe(exc)) from None
        if not tail:
            return last, last
        return ids.from_stream_id(tail[-1][0]) - 1, floor

    async def read_after(self, after: int, count: int = REPLAY_PAGE) -> list[Event]:
        """Up to ``count`` events with an id above ``after``, oldest first."""
        try:
            entries = await self._client().xrange(
                self._stream, min=ids.to_stream_id(after + 1), count=count
            )
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise BrokerUnavailable(_describe(exc)) from None
        return [_event(raw_id, fields) for raw_id, fields in entries]

    # --- health ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._state == "up"

    def health(self) -> dict[str, Any]:
        # never the URL: it holds the password
        return {
            "state": self._state,
            "since": round(self._since, 3),
            "stream": self._stream,
            "last_id": self._position,
            "last_error": self._last_error,
        }

    # --- internals -------------------------------------------------------------------------

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise BrokerUnavailable("the broker client is not started")
        return self._redis

    async def _stream_info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await self._client().xinfo_stream(self._stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None  # nothing published yet
            raise
        return info

    async def _read_loop(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._closed:
            try:
                if self._position is None:
                    # Live from here: where the log ends when this worker first reaches it.
                    info = await self._stream_info()
                    self._position = ids.from_stream_id(info["last-generated-id"]) if info else 0
                    self._positioned.set()
                    self._up()
                answer = await self._client().xread(
                    {self._stream: ids.to_stream_id(self._position)},
                    count=READ_COUNT,
                    block=READ_BLOCK_MS,
                )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            self._up()
            for _stream, entries in answer or ():
                for raw_id, fields in entries:
                    event = _event(raw_id, fields)
                    self._position = event.id
                    self._fanout.publish(event)

    def _up(self) -> None:
        if self._state != "up":
            if self._state == "down":
                log.warning("event broker reachable again, reading from id %s", self._position)
            self._state, self._since = "up", time.time()

    def _down(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        if self._state != "down":
            log.warning("event broker unavailable: %s", self._last_error)
            self._state, self._since = "down", time.time()
        if self._redis is not None and (self._dropping is None or self._dropping.done()):
            # Idle pooled connections to a broker that went away are dead (a restarted
            # server closed them), and the client retries nothing: drop them, so the
            # first publish after the outage opens a new one instead of failing.
            pool = self._redis.connection_pool
            self._dropping = asyncio.create_task(pool.disconnect(inuse_connections=False))


def _trimmed_after(info: dict[str, Any], last_event_id: int) -> bool:
    """Whether entries after ``last_event_id`` may have left the log (XINFO STREAM).

    Trimming (MAXLEN) removes from the front and leaves no trace but the counts; XDEL
    records the highest id it removed. A client id below the first retained entry,
    once anything was removed, counts as outside the log: the entry just before the
    first one may or may not have been the client's, and Redis cannot tell.
    """
    if last_event_id < ids.from_stream_id(info["max-deleted-entry-id"]):
        return True
    first = info.get("first-entry")
    if not first:
        return int(info["entries-added"]) > 0  # all of it trimmed away
    removed = int(info["entries-added"]) > int(info["length"])
    return removed and last_event_id < ids.from_stream_id(first[0])


def _event(raw_id: str, fields: dict[str, str]) -> Event:
    return Event(ids.from_stream_id(raw_id), fields.get("data", ""), fields.get("event"))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
