"""The naive baseline's SSE endpoint: a WSGI generator under Gunicorn sync workers.

Speaks the same protocol as the reference app (``:ok`` at once, ``retry:``, a ``:keepalive``
every SSE_KEEPALIVE_INTERVAL seconds) but has no events, no replay and, as in the
incident, sends no ``X-Accel-Buffering: no``: what the benchmark compares is how the
deployment carries a stream, not the app. Each open stream occupies one sync worker for
its whole life, and the arbiter kills a worker that has not checked in for --timeout
seconds (30 by default), which a worker busy with a stream never does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

KEEPALIVE = float(os.environ.get("SSE_KEEPALIVE_INTERVAL", "30"))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    if environ.get("PATH_INFO") != "/notify/events":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return iter([b"not found\n"])
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return _stream()


def _stream() -> Iterator[bytes]:
    yield b":ok\n\n"
    yield b"retry: 2000\n\n"
    while True:
        time.sleep(KEEPALIVE)
        yield b":keepalive\n\n"
