"""In-process fan-out of published events, with a bounded replay buffer.

Everything here runs on the worker's single event loop and no method awaits, so
publish() and subscribe() are atomic with respect to each other: a subscriber's
replay snapshot and its live queue can neither overlap nor leave a gap. Streams
still dedupe by id, so that guarantee is not load-bearing.

Ids are publish times in microseconds (bumped to stay strictly increasing), so they
order events across restarts and across backends: an event a peer forwards keeps the
id its first backend gave it (see peers.py), and a client that moves to another
backend resumes there by the same Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    id: int
    data: str
    name: str | None = None


class Subscription:
    """One open stream: a bounded queue plus a flag that tells the stream to end."""

    def __init__(self, limit: int, backlog: Iterable[Event] = ()) -> None:
        self.backlog: list[Event] = list(backlog)
        # Set by the Redis broker: events arrive in one global order (so an id at or
        # below the last one sent is a duplicate), and the stream first reads what it
        # missed after this id from the broker (see redis_broker.py).
        self.ordered = False
        self.resume_after: int | None = None
        self.closed_reason: str | None = None
        self._limit = limit
        self._pending: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def offer(self, event: Event) -> bool:
        """Queue an event; False (and closed) when the subscriber has fallen too far behind."""
        if self.closed:
            return False
        if len(self._pending) >= self._limit:
            # Dropping the client costs it one reconnect with Last-Event-ID; letting the
            # queue grow would let one stalled TCP peer exhaust the worker's memory.
            self.close("overflow")
            return False
        self._pending.append(event)
        self._wakeup.set()
        return True

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._wakeup.set()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def pop(self) -> Event | None:
        return self._pending.popleft() if self._pending else None

    async def wait(self, timeout: float) -> bool:
        """Wait until there is something to do; False when the timeout ran out first."""
        if self._pending or self.closed:
            return True
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class Broker:
    def __init__(self, replay_size: int, queue_limit: int) -> None:
        self._last_id = 0
        self._replay: deque[Event] = deque()
        self._replay_ids: set[int] = set()
        self._replay_size = replay_size
        self._queue_limit = queue_limit
        self._subscribers: set[Subscription] = set()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(
        self, data: str, name: str | None = None, event_id: int | None = None
    ) -> tuple[Event, int]:
        """Record and fan out one event; returns it and how many subscribers accepted it.

        ``event_id`` is given for an event forwarded by a peer backend: it keeps that id,
        and one already recorded (a duplicate forward) is not delivered again.
        """
        if event_id is None:
            # a microsecond clock, never behind an id seen (own or a peer's)
            event_id = max(time.time_ns() // 1000, self._last_id + 1)
        elif event_id in self._replay_ids:
            return Event(event_id, data, name), 0
        self._last_id = max(self._last_id, event_id)
        event = Event(event_id, data, name)
        self._remember(event)
        delivered = 0
        for sub in list(self._subscribers):
            if sub.offer(event):
                delivered += 1
            else:
                self._subscribers.discard(sub)
        return event, delivered

    def _remember(self, event: Event) -> None:
        if self._replay_size == 0:
            return
        if self._replay and event.id < self._replay[-1].id:
            # a forwarded event that crossed a newer one on the way: keep the buffer ordered
            at = next(i for i, e in enumerate(self._replay) if e.id > event.id)
            self._replay.insert(at, event)
        else:
            self._replay.append(event)
        self._replay_ids.add(event.id)
        while len(self._replay) > self._replay_size:
            self._replay_ids.discard(self._replay.popleft().id)

    def subscribe(self, last_event_id: int | None = None) -> Subscription:
        backlog = self._missed_since(last_event_id) if last_event_id is not None else []
        sub = Subscription(self._queue_limit, backlog)
        if self._closed:
            sub.close("shutdown")
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every open stream and refuse new ones (the process is shutting down)."""
        self._closed = True
        for sub in self._subscribers:
            sub.close("shutdown")
        self._subscribers.clear()

    def _missed_since(self, last_event_id: int) -> list[Event]:
        # The buffer is id-ordered; anything newer than the client's last id was missed.
        # If that id was evicted (or came from an earlier process) this is the whole
        # buffer: the best we can still deliver.
        return [event for event in self._replay if event.id > last_event_id]
