"""Pure functions: the wire format and settings parsing (no server needed)."""

from __future__ import annotations

import logging

import pytest
from sse_app import ids, sse
from sse_app.settings import Settings


def test_event_lines() -> None:
    assert (
        sse.event(7, "a\r\nb\rc\nd", "n")
        == b"id: 7\nevent: n\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    # Characters that str.splitlines() would split on are data to EventSource.
    assert sse.event(1, "a\x0bb\u2028c") == "id: 1\ndata: a\x0bb\u2028c\n\n".encode()
    assert sse.event(2, "trailing\n") == b"id: 2\ndata: trailing\ndata: \n\n"


def test_field_values_reject_line_ends() -> None:
    assert sse.valid_field_value("update")
    for bad in ("a\nb", "a\rb", "a\r\nb", "a\0b"):
        assert not sse.valid_field_value(bad)


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.retry_ms, settings.keepalive_interval, settings.replay_buffer) == (
        2000,
        30.0,
        1000,
    )
    assert not settings.publishing_enabled


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "SSE_RETRY_MS": "500",
            "SSE_KEEPALIVE_INTERVAL": "0.5",
            "SSE_REPLAY_BUFFER": "0",
            "SSE_SUBSCRIBER_QUEUE": "4",
            "SSE_PUBLISH_TOKEN": " secret\n",
            "SSE_APP_VERSION": "2025.10.03-1",
        }
    )
    assert settings == Settings(500, 0.5, 0, 4, "secret", "2025.10.03-1")
    assert settings.publishing_enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_RETRY_MS", "soon"),
        ("SSE_RETRY_MS", "-1"),
        ("SSE_KEEPALIVE_INTERVAL", "0"),
        ("SSE_KEEPALIVE_INTERVAL", "nan"),
        ("SSE_KEEPALIVE_INTERVAL", "inf"),
        ("SSE_REPLAY_BUFFER", "1.5"),
        ("SSE_SUBSCRIBER_QUEUE", "0"),
    ],
)
def test_bad_settings_fail_loudly(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_broker_settings() -> None:
    url = "redis://:secret@10.0.0.5:6379/0"
    settings = Settings.from_env(
        {"SSE_BROKER_URL": url, "SSE_BROKER_STREAM": "app:{events}", "SSE_BROKER_MAXLEN": "50"}
    )
    assert (settings.broker_url, settings.broker_stream, settings.broker_maxlen) == (
        url,
        "app:{events}",
        50,
    )
    assert settings.broker_enabled and not Settings.from_env({}).broker_enabled


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SSE_BROKER_URL": "http://:secret@host:6379"}, "SSE_BROKER_URL"),
        ({"SSE_BROKER_URL": "redis://:sec ret@host"}, "SSE_BROKER_URL"),
        ({"SSE_BROKER_STREAM": "a b"}, "SSE_BROKER_STREAM"),
        ({"SSE_BROKER_MAXLEN": "0"}, "SSE_BROKER_MAXLEN"),
    ],
)
def test_bad_broker_settings_fail_without_showing_the_url(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name) as failure:
        Settings.from_env(env)
    assert "secret" not in str(failure.value) and "sec ret" not in str(failure.value)


def test_stream_ids_map_to_sse_ids_and_back() -> None:
    for raw, value in [
        ("0-0", 0),
        ("0-1", 1),
        ("1733140000000-0", 1_733_140_000_000_000_000),
        ("1733140000000-999999", 1_733_140_000_000_999_999),
    ]:
        assert ids.from_stream_id(raw) == value
        assert ids.to_stream_id(value) == raw
        assert ids.parse_id(str(value)) == value  # a client's Last-Event-ID resumes from it
    # one order: the SSE ids sort as the stream ids do
    assert ids.from_stream_id("5-999999") < ids.from_stream_id("6-0")
    for bad in ("1-1000000", "9999999999999-0", "1-", "-1", "1-2-3", "\u0661-0", ""):
        with pytest.raises(ValueError):
            ids.from_stream_id(bad)
    with pytest.raises(ValueError):
        ids.to_stream_id(-1)


@pytest.mark.parametrize("broker", ["", "redis://:secret@127.0.0.1:1/0"])
def test_sse_peers_is_ignored_with_one_deprecation_warning(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One release of notice: SSE_PEERS (even a value the old parser refused) starts."""
    from sse_app.main import create_app

    for value in ("b2:8000", "not a peer list"):
        settings = Settings.from_env({"SSE_PEERS": value, "SSE_BROKER_URL": broker})
        assert settings.peers_ignored
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sse_app"):
            create_app(settings)
        warnings = [r.getMessage() for r in caplog.records if "SSE_PEERS" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert "deprecated and ignored" in warnings[0] and "SSE_BROKER_URL" in warnings[0]
        assert "secret" not in caplog.text
    caplog.clear()
    for unset in ({}, {"SSE_PEERS": " "}):  # empty counts as unset, as everywhere
        assert not Settings.from_env(unset).peers_ignored
        with caplog.at_level(logging.WARNING, logger="sse_app"):
            create_app(Settings.from_env(unset))
    assert "deprecated" not in caplog.text
