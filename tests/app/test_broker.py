"""Broker mode (SSE_BROKER_URL): events shared through a real redis-server.

Every backend here is Gunicorn with two Uvicorn workers, so a publish and a stream
usually land on different processes: only the broker can carry the event between them.
Cost: about 15 s (each test starts its own redis-server, in ~20 ms, and one or two
Gunicorn masters; the restart tests wait out keepalives).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KEEPALIVE
from redis_helpers import PASSWORD, RedisServer, free_port
from sse_helpers import TOKEN, EventStream, Frame, Gunicorn, publish, request, server_env

REPLAY = 2
STREAM_KEY = "sse:events"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[list[Gunicorn]]:
    """Backends started by the test (``_backend``), all stopped after it."""
    started: list[Gunicorn] = []
    yield started
    for server in started:
        server.stop()


def _backend(started: list[Gunicorn], tmp: Path, name: str, url: str, workers: int = 2) -> Gunicorn:
    env = server_env(
        SSE_PUBLISH_TOKEN=TOKEN,
        SSE_KEEPALIVE_INTERVAL=str(KEEPALIVE),
        SSE_REPLAY_BUFFER=str(REPLAY),
        SSE_BROKER_URL=url,
    )
    server = Gunicorn.bound(env, tmp / f"{name}.log", workers=workers)
    started.append(server)
    return server


def _health(port: int) -> dict[str, Any]:
    answer = request(port, "GET", "/healthz")
    assert answer.status == 200, answer
    assert PASSWORD not in answer.body.decode(), "healthz shows the broker password"
    health: dict[str, Any] = answer.json()
    return health


def _wait_health(port: int, status: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = _health(port)
        if health["status"] == status or time.monotonic() > deadline:
            assert health["status"] == status, health
            return health
        time.sleep(0.05)


def _events(stream: EventStream, count: int, timeout: float = 5.0) -> list[Frame]:
    return [stream.next_event(timeout) for _ in range(count)]


def _keepalives(stream: EventStream, count: int) -> list[Frame]:
    """The next ``count`` keepalives, failing on an event or the end of the stream."""
    seen: list[Frame] = []
    while len(seen) < count:
        frame = stream.next_frame(KEEPALIVE * 4)
        assert frame is not None, "the stream ended"
        assert not frame.is_event, frame
        if frame.comment == "keepalive":
            seen.append(frame)
    return seen


def test_two_backends_deliver_every_event_once_in_one_order(
    tmp_path: Path, broker: RedisServer, backends: list[Gunicorn]
) -> None:
    a = _backend(backends, tmp_path, "a", broker.url)
    b = _backend(backends, tmp_path, "b", broker.url)
    # four streams per backend: with two workers each, both workers hold streams
    streams = [EventStream(server.port).open() for server in (a, b) for _ in range(4)]
    published = []
    for n in range(20):
        answer = publish((a, b)[n % 2].port, f"event-{n}")  # alternately
        assert answer.status == 202, answer
        published.append((answer.json()["id"], f"event-{n}"))
    ids = [event_id for event_id, _ in published]
    assert ids == sorted(set(ids)), "the broker's ids are not increasing in publish order"
    for stream in streams:
        assert [(e.id, e.data) for e in _events(stream, 20)] == published
        assert stream.events_until_keepalive() == [], "an event arrived twice"
        stream.close()


def test_resume_by_last_event_id_on_another_backend_then_live(
    tmp_path: Path, broker: RedisServer, backends: list[Gunicorn]
) -> None:
    a = _backend(backends, tmp_path, "a", broker.url)
    b = _backend(backends, tmp_path, "b", broker.url)
    ids = [publish(a.port, f"missed-{n}").json()["id"] for n in range(5)]

    with EventStream(b.port, headers={"Last-Event-ID": str(ids[1])}).open() as stream:
        assert [e.id for e in _events(stream, 3)] == ids[2:]
        live = publish(a.port, "live").json()["id"]
        assert stream.next_event().id == live
        assert stream.events_until_keepalive() == []
    ids.append(live)

    # the same from the query parameter, and an id of the future: live only, not hidden
    with EventStream(b.port, f"/notify/events?lastEventId={ids[3]}").open() as stream:
        assert [e.id for e in stream.events_until_keepalive()] == ids[4:]
    with EventStream(b.port, headers={"Last-Event-ID": str(2**63 - 1)}).open() as stream:
        assert stream.events_until_keepalive() == []
        after = publish(a.port, "after-future").json()["id"]
        assert stream.next_event().id == after
    ids.append(after)


def test_resume_from_outside_the_retained_log_replays_a_bounded_tail(
    tmp_path: Path, broker: RedisServer, backends: list[Gunicorn]
) -> None:
    a = _backend(backends, tmp_path, "a", broker.url, workers=1)
    ids = [publish(a.port, f"old-{n}").json()["id"] for n in range(6)]
    # retention: the log keeps the newest 4 (XTRIM as MAXLEN ~ does, but exact)
    assert broker.command("XTRIM", STREAM_KEY, "MAXLEN", "4") == "2"

    # older than the first retained entry: the newest SSE_REPLAY_BUFFER events only
    for old in ids[:2]:
        with EventStream(a.port, headers={"Last-Event-ID": str(old)}).open() as stream:
            assert [e.id for e in stream.events_until_keepalive()] == ids[-REPLAY:]
    # the first retained entry: nothing after it is lost, so all of it
    with EventStream(a.port, headers={"Last-Event-ID": str(ids[2])}).open() as stream:
        assert [e.id for e in stream.events_until_keepalive()] == ids[3:]
    for bogus in ("abc", "-1", "1733140000000-0", "9" * 40):
        with EventStream(a.port, headers={"Last-Event-ID": bogus}).open() as stream:
            assert stream.events_until_keepalive() == [], bogus


def test_broker_restart_keeps_streams_open_and_refuses_publishes_meanwhile(
    tmp_path: Path, broker: RedisServer, backends: list[Gunicorn]
) -> None:
    a = _backend(backends, tmp_path, "a", broker.url)
    held = EventStream(a.port).open()
    before = publish(a.port, "before").json()["id"]
    assert held.next_event().id == before

    broker.stop()
    _keepalives(held, 3)  # the stream stays open and keeps its keepalives
    refused = publish(a.port, "during")
    assert refused.status == 503, refused
    assert refused.headers["Retry-After"] == "2"
    health = _wait_health(a.port, "broker_down")
    assert health["broker"]["state"] == "down" and health["broker"]["last_error"]
    # a stream resuming during the outage opens too, and waits with keepalives
    resuming = EventStream(a.port, headers={"Last-Event-ID": str(before)}).open()
    _keepalives(resuming, 2)

    broker.start()
    _wait_health(a.port, "ok")
    after = publish(a.port, "after")
    assert after.status == 202, (after, _health(a.port), a.log())
    assert held.next_event().id == after.json()["id"]
    assert resuming.next_event().id == after.json()["id"]
    # the event from before the restart is still in the log (AOF), in order
    with EventStream(a.port, headers={"Last-Event-ID": "0"}).open() as stream:
        assert [e.data for e in stream.events_until_keepalive()] == ["before", "after"]
    for stream in (held, resuming):
        assert stream.events_until_keepalive() == []
    # a stop ends the open streams and the readers blocked in XREAD at once
    stopped_in = a.stop()
    assert stopped_in < 5, a.log()
    for stream in (held, resuming):
        # keepalives written while the stop was under way may still be unread (a loaded
        # machine): at most one per interval of the stop, then the terminating chunk
        unread = stream.frames_until_end(limit=int(stopped_in / KEEPALIVE) + 3)
        assert all(f.comment == "keepalive" for f in unread), unread
        stream.close()


def test_backend_starts_without_its_broker_and_says_so(
    tmp_path: Path, backends: list[Gunicorn]
) -> None:
    broker = RedisServer(tmp_path / "redis", port=free_port())  # not started yet
    a = _backend(backends, tmp_path, "a", broker.url)
    health = _health(a.port)
    assert health["status"] == "broker_down", health
    assert health["broker"]["state"] != "up"
    held = EventStream(a.port).open()
    _keepalives(held, 2)
    refused = publish(a.port, "too early")
    assert refused.status == 503 and refused.headers["Retry-After"] == "2", refused

    try:
        broker.start()
        _wait_health(a.port, "ok")
        answer = publish(a.port, "first")
        assert answer.status == 202, answer
        assert held.next_event().id == answer.json()["id"]
    finally:
        held.close()
        broker.stop()
    assert PASSWORD not in a.log(), "the broker password reached the log"
