"""POST /notify/publish: fan-out, authentication and input validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sse_helpers import TOKEN, EventStream, publish, request, uvicorn_in_thread


def test_publish_fans_out_to_every_subscriber(
    port: int, connect: Callable[..., EventStream]
) -> None:
    streams = [connect().open() for _ in range(3)]

    first = publish(port, "to all", event="broadcast")
    second = publish(port, "again")
    assert first.status == 202 and second.status == 202
    # Other tests' closed streams may not be reaped yet, so at least ours.
    assert first.json()["subscribers"] >= 3
    assert second.json()["id"] > first.json()["id"]  # monotonic ids

    for stream in streams:
        got = stream.next_event()
        assert (got.id, got.event, got.data) == (first.json()["id"], "broadcast", "to all")
        assert stream.next_event().id == second.json()["id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer t\u00f6ken"},  # non-ASCII must not crash the comparison
    ],
    ids=["missing", "wrong", "prefix", "basic", "non-ascii"],
)
def test_unauthorized_publish_is_rejected_and_sends_nothing(
    port: int, connect: Callable[..., EventStream], headers: dict[str, str]
) -> None:
    stream = connect().open()
    body = b'{"data": "must not be sent"}'
    resp = request(port, "POST", "/notify/publish", body, {**headers, "Content-Type": "x"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"

    # The next event this subscriber sees is the authorized one, not the rejected one.
    ok = publish(port, "authorized")
    event = stream.next_event()
    assert (event.id, event.data) == (ok.json()["id"], "authorized")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b'"just a string"',
        b'{"event": "x"}',
        b'{"data": ""}',
        b'{"data": "x", "event": "two\\nlines"}',
        b'{"data": "x", "event": 5}',
    ],
    ids=["bad-json", "empty", "not-object", "no-data", "empty-data", "event-newline", "event-int"],
)
def test_bad_publish_body_is_400(port: int, body: bytes) -> None:
    resp = request(port, "POST", "/notify/publish", body, {"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 400
    assert "error" in resp.json()


def test_oversized_publish_is_413(port: int) -> None:
    body = b'{"data": "' + b"x" * 70_000 + b'"}'
    resp = request(port, "POST", "/notify/publish", body, {"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 413


def test_publishing_is_disabled_without_a_token() -> None:
    from sse_app.main import create_app
    from sse_app.settings import Settings

    with uvicorn_in_thread(create_app(Settings(publish_token=""))) as port:
        for token in (None, "", "anything"):
            resp = publish(port, "x", token=token)
            assert resp.status == 403, token
        assert request(port, "GET", "/healthz").status == 200
