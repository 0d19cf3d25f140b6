"""Reconnecting with Last-Event-ID replays what the client missed, from a bounded buffer."""

from __future__ import annotations

from collections.abc import Callable

from conftest import REPLAY
from sse_helpers import EventStream, publish


def _publish_many(port: int, count: int, prefix: str) -> list[int]:
    return [publish(port, f"{prefix}-{n}").json()["id"] for n in range(count)]


def test_last_event_id_header_replays_missed_events_then_goes_live(
    port: int, connect: Callable[..., EventStream]
) -> None:
    ids = _publish_many(port, 3, "header")

    stream = connect(headers={"Last-Event-ID": str(ids[0])}).open()
    replayed = [stream.next_event(), stream.next_event()]
    assert [e.id for e in replayed] == ids[1:]
    assert [e.data for e in replayed] == ["header-1", "header-2"]

    live = publish(port, "live").json()["id"]
    # Exactly the live event next: nothing replayed twice, nothing skipped.
    assert stream.next_event().id == live


def test_last_event_id_query_parameter_works_too(
    port: int, connect: Callable[..., EventStream]
) -> None:
    ids = _publish_many(port, 2, "query")
    stream = connect(f"/notify/events?lastEventId={ids[0]}").open()
    assert [e.id for e in stream.events_until_keepalive()] == ids[1:]


def test_replay_buffer_is_bounded_and_evicts_the_oldest(
    port: int, connect: Callable[..., EventStream]
) -> None:
    ids = _publish_many(port, REPLAY + 2, "evict")

    # The client last saw ids[0]; ids[1] has been evicted, so it gets what is left.
    stream = connect(headers={"Last-Event-ID": str(ids[0])}).open()
    assert [e.id for e in stream.events_until_keepalive()] == ids[-REPLAY:]


def test_no_replay_without_or_with_an_up_to_date_or_bogus_last_event_id(
    port: int, connect: Callable[..., EventStream]
) -> None:
    ids = _publish_many(port, 2, "none")
    bogus = ("not-a-number", "-1", "9" * 5000, "\u00b2", str(2**63))  # -1 once replayed all
    cases = [{}, {"Last-Event-ID": str(ids[-1])}, *({"Last-Event-ID": b} for b in bogus)]
    for headers in cases:
        stream = connect(headers=headers).open()
        assert stream.events_until_keepalive() == [], headers
