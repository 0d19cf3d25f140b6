"""Forwarding of published events to the other backends of the same upstream.

The broker is per process, and nginx routes a publish to one backend only. So that a
stream receives every event whichever backend it is on, and a stream that moves (its
backend restarts) resumes on another one by Last-Event-ID, the backend that accepts a
publish forwards it to each peer (SSE_PEERS) with its id in ``X-SSE-Event-Id``; a peer
records it under that id and does not forward it again.

A peer that is down misses the events of its downtime; a stream reconnecting to it
later still gets everything published since it came up (ids are ordered by time).
"""

from __future__ import annotations

import asyncio
import http.client
import logging

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


class Forwarder:
    """One queue and one sender task per peer, so a peer gets events in publish order.

    ``submit`` never waits: the publisher gets its answer at once, whatever the peers do.
    """

    def __init__(self, peers: tuple[str, ...], token: str, queue_limit: int = 1000) -> None:
        self._peers = peers
        self._token = token
        self._queue_limit = queue_limit
        self._queues: dict[str, asyncio.Queue[tuple[int, bytes]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

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
                log.warning("forwarding event %s to %s: queue full, dropped", event_id, peer)

    async def _send(self, peer: str, queue: asyncio.Queue[tuple[int, bytes]]) -> None:
        while True:
            event_id, body = await queue.get()
            await asyncio.to_thread(_post, peer, self._token, event_id, body)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


def _post(peer: str, token: str, event_id: int, body: bytes) -> None:
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
            log.warning("forwarding event %s to %s: HTTP %s", event_id, peer, status)
    except OSError as exc:
        log.warning("forwarding event %s to %s: %s", event_id, peer, exc)
    finally:
        connection.close()
