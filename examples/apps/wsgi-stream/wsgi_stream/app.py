"""WSGI app: `GET /events` streams Server-Sent Events from a generator.

Served by Gunicorn's gthread worker: each open stream holds one thread for as long as it
is open, so the worker needs `--threads` above the streams it should hold.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]


def _seconds(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if not 0 < value <= 86400:
        raise ValueError(f"{name} must be in (0, 86400], got {value}")
    return value


KEEPALIVE = _seconds("SSE_KEEPALIVE_INTERVAL", 30)
TICK = _seconds("TICK_SECONDS", 1)


def events() -> Iterator[bytes]:
    """`:ok`, then a tick event every TICK seconds and a keepalive comment whenever
    KEEPALIVE seconds passed without a write (the timer restarts on every write)."""
    yield b":ok\n\n"
    count = 0
    next_tick = time.monotonic() + TICK
    last_write = time.monotonic()
    while True:
        now = time.monotonic()
        wake = min(next_tick, last_write + KEEPALIVE)
        if wake > now:
            time.sleep(wake - now)
            continue
        if now >= next_tick:
            count += 1
            data = json.dumps({"tick": count, "pid": os.getpid()})
            yield f"id: {count}\nevent: tick\ndata: {data}\n\n".encode()
            next_tick += TICK
        else:
            yield b":keepalive\n\n"
        last_write = time.monotonic()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
        return [b"method not allowed\n"]
    if path == "/events":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                # nginx: do not buffer this response
                ("X-Accel-Buffering", "no"),
            ],
        )
        return events()
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"wsgi-stream example: GET /events\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
