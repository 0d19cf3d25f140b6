"""In-process fan-out of published events, with a bounded replay buffer.

Everything here runs on the worker's single event loop and no method awaits, so
publish() and subscribe() are atomic with respect to each other: a subscriber's
replay snapshot and its live position can neither overlap nor leave a gap.

Fan-out is one shared log per worker (``Fanout``), not a queue per stream: a publish
appends the event once, and each subscription only holds a cursor into the log. A
stream that falls more than ``queue_limit`` events behind is closed ("overflow"): the
client resumes by Last-Event-ID instead of one stalled peer pinning the worker's memory.
A stream waiting for work holds one future; nothing else per stream (no queue, no
asyncio.Event, no timer: keepalives come from one sweep per worker, see stream.py).

Ids are publish times in microseconds (bumped to stay strictly increasing), so they
order events across restarts: a client that reconnects to a restarted worker resumes
from the same Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    id: int
    data: str
    name: str | None = None


class Subscription:
    """One open stream: its place in the worker's log, and why it ended (if it did)."""

    __slots__ = (
        "_fanout",
        "_waiter",
        "backlog",
        "closed_reason",
        "cursor",
        "keepalive_due",
        "last_write",
        "on_close",
        "resume_after",
        "scheduled",
    )

    def __init__(self, fanout: Fanout, backlog: Sequence[Event] = ()) -> None:
        self._fanout = fanout
        self.backlog: Sequence[Event] = backlog
        # Set by the Redis broker: the stream first reads what it missed after this id
        # from the broker (see redis_broker.py), then goes on from its cursor.
        self.resume_after: int | None = None
        self.closed_reason: str | None = None
        self.cursor = fanout.head  # the sequence number of the next event to send
        self._waiter: asyncio.Future[None] | None = None
        # Called once when the stream is closed (stream.py: abandon a stalled writer).
        self.on_close: Callable[[], None] | None = None
        # Kept by the stream and its keepalive sweep (stream.py).
        self.last_write = 0.0
        self.keepalive_due = False
        self.scheduled = False

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            if self.on_close is not None:
                self.on_close()
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def lag(self) -> int:
        return self._fanout.head - self.cursor

    def pop(self) -> Event | None:
        """The next event from the log, or None when this stream is up to date."""
        event = self._fanout.at(self.cursor)
        if event is not None:
            self.cursor += 1
        return event

    def ready(self, events: bool = True) -> bool:
        return self.closed_reason is not None or self.keepalive_due or (events and self.lag > 0)

    async def wait(self, timeout: float | None = None, events: bool = True) -> None:
        """Until there is an event, a keepalive is due, the stream closes or ``timeout``.

        ``events=False``: pending events do not count (a resume still reading the broker
        lets them wait in the log), a publish only wakes it early.
        """
        if self.ready(events):
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        # A timer only where a caller asks for one (a resume waiting for the broker).
        timer = None if timeout is None else loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Fanout:
    """The worker's open streams and the one log of live events they read from."""

    def __init__(self, queue_limit: int) -> None:
        self._limit = queue_limit
        self._log: deque[Event] = deque()
        self._start = 0  # the sequence number of _log[0]
        self.subscribers: set[Subscription] = set()

    @property
    def head(self) -> int:
        """The sequence number the next published event gets."""
        return self._start + len(self._log)

    def at(self, seq: int) -> Event | None:
        index = seq - self._start
        return self._log[index] if 0 <= index < len(self._log) else None

    def add(self, sub: Subscription) -> None:
        self.subscribers.add(sub)

    def discard(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def publish(self, event: Event) -> int:
        """Append ``event`` and wake its readers; returns how many streams will get it."""
        self._log.append(event)
        head = self.head
        delivered = 0
        gone: list[Subscription] = []
        for sub in self.subscribers:
            if sub.closed_reason is not None:
                gone.append(sub)  # ending (a disconnect): not a reader any more
            elif head - sub.cursor > self._limit:
                # Dropping the client costs it one reconnect with Last-Event-ID; letting
                # its backlog grow would let one stalled TCP peer exhaust the memory.
                gone.append(sub)
                sub.close("overflow")
            else:
                delivered += 1
                sub.wake()
        for sub in gone:
            self.subscribers.discard(sub)
        # No open stream needs more than the last `limit` events (the others were closed).
        while len(self._log) > self._limit:
            self._log.popleft()
            self._start += 1
        return delivered

    def close(self, reason: str) -> None:
        for sub in self.subscribers:
            sub.close(reason)
        self.subscribers.clear()


class Broker:
    def __init__(self, replay_size: int, queue_limit: int) -> None:
        self._last_id = 0
        self._replay: deque[Event] = deque(maxlen=replay_size)
        self._fanout = Fanout(queue_limit)
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._fanout.subscribers)

    def publish(self, data: str, name: str | None = None) -> tuple[Event, int]:
        """Record and fan out one event; returns it and how many subscribers accepted it."""
        # a microsecond clock, never behind an id already given
        self._last_id = max(time.time_ns() // 1000, self._last_id + 1)
        event = Event(self._last_id, data, name)
        self._replay.append(event)  # maxlen 0 keeps nothing
        return event, self._fanout.publish(event)

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        backlog = self._missed_since(last_event_id) if last_event_id is not None else ()
        sub = Subscription(self._fanout, backlog)
        if self._closed:
            sub.close("shutdown")
        else:
            self._fanout.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._fanout.discard(sub)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End every open stream and refuse new ones (the process is shutting down)."""
        self._closed = True
        self._fanout.close("shutdown")

    def _missed_since(self, last_event_id: int) -> list[Event]:
        # The buffer is id-ordered; anything newer than the client's last id was missed.
        # If that id was evicted (or came from an earlier process) this is the whole
        # buffer: the best we can still deliver.
        return [event for event in self._replay if event.id > last_event_id]
