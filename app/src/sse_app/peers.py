"""Forwarding of published events to the other backends of the same upstream.

The broker is per process, and nginx routes a publish to one backend only. So that a
stream receives every event whichever backend it is on, and a stream that moves (its
backend restarts) resumes on another one by Last-Event-ID, the backend that accepts a
publish forwards it to each peer (SSE_PEERS) with its id in ``X-SSE-Event-Id``; a peer
records it under that id and does not forward it again.

A peer that is down (or answers with anything but HTTP) misses the events of its
downtime once the retries are spent (counted in /healthz); a stream reconnecting to it
later still gets everything published since it came up (ids are ordered by time).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
from dataclasses import asdict, dataclass

EVENT_ID_HEADER = "X-SSE-Event-Id"
FORWARD_TIMEOUT = 2.0

log = logging.getLogger("sse_app.peers")


def parse_peers(raw: str, variable: str = "SSE_PEERS") -> tuple[str, ...]:
    """``host:port`` entries separated by commas or whitespace; ValueError names the variable."""
    peers = []
    for entry in raw.replace(",", " ").split():
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{variable} entries must be host:port, got {entry!r}")
        peers.append(entry)
    return tuple(peers)


@dataclass
class PeerStats:
    """What /healthz reports per peer: forwarding is otherwise silent by design."""

    sent: int = 0
    failed_attempts: int = 0
    dropped: int = 0
    last_error: str | None = None


class Forwarder:
    """One queue and one sender task per peer, so a peer gets events in publish order.

    ``submit`` never waits: the publisher gets its answer at once, whatever the peers do.
    A failed send (refused, timed out, a peer that answers with anything but HTTP 202) is
    logged, counted and retried with backoff; after RETRIES attempts the event is dropped
    for that peer (a stream there resumes from its own buffer) and the next one is tried,
    so one bad answer never ends forwarding to that peer.
    """

    RETRIES = 4
    BACKOFF_FIRST_S = 0.25
    BACKOFF_MAX_S = 5.0

    def __init__(self, peers: tuple[str, ...], token: str, queue_limit: int = 1000) -> None:
        self._peers = peers
        self._token = token
        self._queue_limit = queue_limit
        self._queues: dict[str, asyncio.Queue[tuple[int, bytes]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stats = {peer: PeerStats() for peer in peers}

    def stats(self) -> dict[str, dict[str, object]]:
        return {peer: asdict(stats) for peer, stats in self._stats.items()}

    def submit(self, event_id: int, body: bytes) -> None:
        if not self._queues:  # first use: inside the running event loop
            for peer in self._peers:
                queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(self._queue_limit)
                self._queues[peer] = queue
                self._tasks.append(asyncio.create_task(self._send(peer, queue)))
        for peer, queue in self._queues.items():
            try:
                queue.put_nowait((event_id, body))
            except asyncio.QueueFull:
                self._stats[peer].dropped += 1
                log.warning("forwarding event %s to %s: queue full, dropped", event_id, peer)

    async def _send(self, peer: str, queue: asyncio.Queue[tuple[int, bytes]]) -> None:
        while True:
            event_id, body = await queue.get()
            await self._deliver(peer, event_id, body)

    async def _deliver(self, peer: str, event_id: int, body: bytes) -> None:
        stats = self._stats[peer]
        delay = self.BACKOFF_FIRST_S
        for attempt in range(1, self.RETRIES + 1):
            try:
                await asyncio.to_thread(_post, peer, self._token, event_id, body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of one peer must not end its sender
                stats.failed_attempts += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if isinstance(exc, PeerAnswerError) and exc.permanent:
                    break  # the peer refused this event (4xx): sending it again cannot help
                log.warning(
                    "forwarding event %s to %s (attempt %d of %d): %s",
                    event_id,
                    peer,
                    attempt,
                    self.RETRIES,
                    stats.last_error,
                )
                if attempt < self.RETRIES:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.BACKOFF_MAX_S)
                continue
            stats.sent += 1
            return
        stats.dropped += 1
        log.warning(
            "forwarding event %s to %s: dropped after %d attempts", event_id, peer, self.RETRIES
        )

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


class PeerAnswerError(Exception):
    """The peer answered, but not with 202 Accepted."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.permanent = 400 <= status < 500


def _post(peer: str, token: str, event_id: int, body: bytes) -> None:
    """One POST to the peer; raises on any failure (the caller counts and retries)."""
    host, _, port = peer.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=FORWARD_TIMEOUT)
    try:
        connection.request(
            "POST",
            "/notify/publish",
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                EVENT_ID_HEADER: str(event_id),
            },
        )
        status = connection.getresponse().status
        if status != 202:
            raise PeerAnswerError(status)
    finally:
        connection.close()
