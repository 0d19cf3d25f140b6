"""The event stream itself: preamble, keepalives, framing, disconnects, slow clients."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import KEEPALIVE, RETRY_MS, VERSION
from sse_helpers import EventStream, publish


def test_ok_comment_is_flushed_first_and_at_once(connect: Callable[..., EventStream]) -> None:
    started = time.monotonic()
    stream = connect()
    first = stream.read_chunk(timeout=5)
    elapsed = time.monotonic() - started

    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert stream.headers["x-app-version"] == VERSION
    assert stream.headers["transfer-encoding"] == "chunked"
    # Its own write, not coalesced with later data, and no waiting for a keepalive.
    assert first == b":ok\n\n"
    assert elapsed < 2.0


def test_retry_hint_follows_ok(connect: Callable[..., EventStream]) -> None:
    stream = connect()
    ok, retry = stream.next_frame(), stream.next_frame()
    assert ok is not None and ok.comment == "ok"
    assert retry is not None and retry.raw == f"retry: {RETRY_MS}"


def test_keepalives_arrive_on_an_idle_stream(connect: Callable[..., EventStream]) -> None:
    stream = connect().open()
    started = time.monotonic()
    for _ in range(2):
        frame = stream.next_frame(timeout=KEEPALIVE + 3)
        assert frame is not None and frame.raw == ":keepalive"
    # Two intervals' worth, with a generous allowance for a loaded machine.
    assert time.monotonic() - started < 2 * KEEPALIVE + 3


def test_event_framing_splits_every_kind_of_line_end(
    port: int, connect: Callable[..., EventStream]
) -> None:
    stream = connect().open()
    resp = publish(port, "one\ntwo\r\nthree\rfour", event="greeting")
    assert resp.status == 202

    frame = stream.next_event()
    assert frame.raw.split("\n") == [
        f"id: {resp.json()['id']}",
        "event: greeting",
        "data: one",
        "data: two",
        "data: three",
        "data: four",
    ]
    assert frame.data == "one\ntwo\nthree\nfour"


def test_non_string_data_is_sent_as_json_and_unnamed_events_have_no_event_line(
    port: int, connect: Callable[..., EventStream]
) -> None:
    stream = connect().open()
    publish(port, {"n": 1, "tags": ["a", "ü"]})
    frame = stream.next_event()
    assert frame.event is None
    assert frame.data == '{"n":1,"tags":["a","ü"]}'


def test_a_closed_client_stops_counting_as_subscriber(
    port: int, connect: Callable[..., EventStream]
) -> None:
    stream = connect().open()
    assert publish(port, "hello").json()["subscribers"] >= 1
    stream.close()

    # Noticed through the disconnect message, not at the next write: poll briefly.
    deadline = time.monotonic() + 5
    while publish(port, "probe").json()["subscribers"] != 0:
        assert time.monotonic() < deadline, "disconnected subscriber still counted"
        time.sleep(0.05)


def test_a_subscriber_that_stops_reading_is_dropped(
    port: int, connect: Callable[..., EventStream]
) -> None:
    healthy = connect().open()
    # A tiny receive window makes the server's socket buffer fill quickly.
    stalled = connect(rcvbuf=4096).open()

    big = "x" * 60_000
    dropped_after = None
    for n in range(1, 400):
        if publish(port, big).json()["subscribers"] == 1:
            dropped_after = n
            break
        # Keep the healthy client drained, so only the stalled one falls behind.
        assert healthy.next_event().data == big
    assert dropped_after is not None, "the stalled subscriber was never dropped"

    # The healthy stream is unaffected and still receives live events.
    assert healthy.next_event().data == big
    publish(port, "after")
    assert healthy.next_event().data == "after"

    # The stalled connection is closed by the server: draining it ends in EOF, not in
    # more and more events.
    deadline = time.monotonic() + 15
    while True:
        stalled.sock.settimeout(max(0.1, deadline - time.monotonic()))
        if not stalled.sock.recv(1 << 20):
            break
        assert time.monotonic() < deadline, "stalled connection was not closed"
