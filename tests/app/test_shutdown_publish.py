"""A publish that reaches a worker after its shutdown began is refused, not lost.

Without a broker an event lives in the worker's memory only; once SIGTERM has ended the
streams, an event accepted with 202 reaches nobody (the restart measurement saw 1,000
clients each miss one). The app is driven over ASGI in the main thread, where the
shutdown hook is installed, and SIGTERM is sent to this process with a no-op handler
behind the app's own (so pytest keeps running).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from sse_app.main import create_app
from sse_app.settings import Settings
from sse_helpers import TOKEN


@pytest.fixture
def quiet_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _publish(app: Any, data: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = json.dumps({"data": data}).encode()
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()  # no disconnect during the request
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/notify/publish",
        "raw_path": b"/notify/publish",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, json.loads(payload)


def test_publish_after_sigterm_is_refused_with_retry_after(quiet_sigterm: None) -> None:
    app = create_app(Settings(publish_token=TOKEN))

    async def scenario() -> list[tuple[int, dict[str, str], dict[str, Any]]]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
        assert (await outbox.get())["type"] == "lifespan.startup.complete"
        answers = [await _publish(app, "before")]
        os.kill(os.getpid(), signal.SIGTERM)  # what systemd's stop sends
        await asyncio.sleep(0.2)  # the hook hands the close to the loop
        answers.append(await _publish(app, "after"))
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        return answers

    (before, _, accepted), (after, headers, refused) = asyncio.run(scenario())
    assert before == 202 and accepted["id"] > 0
    assert after == 503, refused
    assert headers["retry-after"] == "2"
    assert "shutting down" in refused["error"]
