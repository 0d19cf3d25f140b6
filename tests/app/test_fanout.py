"""What one open stream costs the worker, and the reconnect spread (issue 20).

A stream holds a cursor into the worker's one event log (no queue of its own), the
request's task plus one disconnect watcher, and no timer: keepalives come from one sweep
per worker. These tests pin that shape on a real Uvicorn server (in a thread, so the
test can count the worker's tasks and timers through a probe route), the keepalive
timing around events, and the jittered ``retry:``. Cost: about 3 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from sse_app.broker import Broker
from sse_app.main import create_app
from sse_app.settings import MAX_JITTER_MS, Settings
from sse_helpers import TOKEN, EventStream, publish, request, uvicorn_in_thread
from starlette.types import ASGIApp, Receive, Scope, Send

INTERVAL = 0.4
STREAMS = 40
MAX_AWAIT_DEPTH = 8


def _with_probe(app: ASGIApp) -> ASGIApp:
    """``app`` plus GET /_probe: the serving loop's task and timer counts."""

    async def probed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/_probe":
            await app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        body = json.dumps(
            {
                "tasks": len(asyncio.all_tasks()),
                # pending TimerHandles (call_later/call_at), cancelled ones excluded
                "timers": sum(1 for h in loop._scheduled if not h.cancelled()),  # type: ignore[attr-defined]
                # the request tasks (Uvicorn's RequestResponseCycle.run_asgi)
                "await_depth": max(
                    (_await_depth(t) for t in asyncio.all_tasks() if _is_request(t)), default=0
                ),
            }
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return probed


def _await_depth(task: asyncio.Task[object]) -> int:
    """How many coroutines deep ``task`` is suspended (each holds a frame)."""
    depth, coro = 0, task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        depth += 1
        coro = coro.cr_await
    return depth


def _is_request(task: asyncio.Task[object]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "").endswith("run_asgi")


@pytest.fixture
def served() -> Iterator[int]:
    settings = Settings(
        keepalive_interval=INTERVAL, publish_token=TOKEN, retry_ms=1000, retry_jitter_ms=500
    )
    with uvicorn_in_thread(_with_probe(create_app(settings))) as port:
        yield port


def _probe(port: int) -> dict[str, int]:
    answer = request(port, "GET", "/_probe")
    assert answer.status == 200
    counts: dict[str, int] = answer.json()
    return counts


def test_open_streams_cost_one_extra_task_each_and_no_timer(served: int) -> None:
    before = _probe(served)
    streams = [EventStream(served).open() for _ in range(STREAMS)]
    try:
        for stream in streams:  # every one has written a keepalive: all are in steady state
            frame = stream.next_frame(INTERVAL * 10)
            assert frame is not None and frame.comment == "keepalive"
        during = _probe(served)
        # the request's own task (it writes) and its disconnect watcher, nothing else
        assert during["tasks"] - before["tasks"] <= 2 * STREAMS, (before, during)
        # one keepalive sweep for all of them, not a timer per stream
        assert during["timers"] - before["timers"] <= 2, (before, during)
        # the stream is served past Starlette's middleware and router, whose frames would
        # live as long as it does (about 6 KB a stream): it waits a few coroutines deep
        assert during["await_depth"] <= MAX_AWAIT_DEPTH, during
    finally:
        for stream in streams:
            stream.close()


def test_keepalive_comes_an_interval_after_the_last_event(served: int) -> None:
    with EventStream(served).open() as stream:
        frame = stream.next_frame(INTERVAL * 10)
        assert frame is not None and frame.comment == "keepalive"
        # halfway to the next keepalive, an event: the sweep must move the stream's turn
        time.sleep(INTERVAL / 2)
        assert publish(served, "moved").status == 202
        assert stream.next_event().data == "moved"
        sent = time.monotonic()
        frame = stream.next_frame(INTERVAL * 10)
        gap = time.monotonic() - sent
        assert frame is not None and frame.comment == "keepalive"
        # not at its old turn (INTERVAL/2 after the event); a generous upper bound
        assert INTERVAL * 0.8 <= gap < INTERVAL + 2.0, gap


def test_retry_is_jittered_per_stream_within_the_bounds(served: int) -> None:
    retries = set()
    for _ in range(20):
        with EventStream(served) as stream:
            ok, retry = stream.next_frame(), stream.next_frame()
            assert ok is not None and ok.comment == "ok"
            assert retry is not None and retry.raw.startswith("retry: ")
            retries.add(int(retry.raw.removeprefix("retry: ")))
    assert all(1000 <= r <= 1500 for r in retries), retries
    # 20 draws from 501 values: all equal only if there is no jitter
    assert len(retries) > 5, retries


def test_retry_jitter_setting() -> None:
    assert Settings.from_env({}).retry_jitter_ms == 0
    assert Settings.from_env({"SSE_RETRY_JITTER_MS": " 750 "}).retry_jitter_ms == 750
    for bad in ("-1", "soon", "1.5", str(MAX_JITTER_MS + 1)):
        with pytest.raises(ValueError, match="SSE_RETRY_JITTER_MS"):
            Settings.from_env({"SSE_RETRY_JITTER_MS": bad})


def test_the_worker_log_holds_at_most_the_queue_limit() -> None:
    broker = Broker(replay_size=3, queue_limit=4)
    reader, stalled = broker.subscribe(), broker.subscribe()
    for n in range(20):
        broker.publish(f"e{n}")
        popped = reader.pop()
        assert popped is not None and popped.data == f"e{n}"
        assert reader.pop() is None
    # the stalled one overflowed after queue_limit events; the log did not keep the rest
    assert stalled.closed_reason == "overflow"
    assert broker.subscriber_count == 1
    assert len(broker._fanout._log) <= 4
    assert [e.data for e in broker.subscribe(0).backlog] == ["e17", "e18", "e19"]
