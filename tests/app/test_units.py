"""Pure functions: the wire format and settings parsing (no server needed)."""

from __future__ import annotations

import pytest
from sse_app import sse
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
            "SSE_PEERS": "b1:8000, [::1]:8001 b3:9",
        }
    )
    peers = ("b1:8000", "[::1]:8001", "b3:9")
    assert settings == Settings(500, 0.5, 0, 4, "secret", "2025.10.03-1", peers)
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
        ("SSE_PEERS", "backend2"),
        ("SSE_PEERS", "backend2:http"),
        ("SSE_PEERS", "b1:8000,:8001"),
        ("SSE_PEERS", "b1:70000"),
    ],
)
def test_bad_settings_fail_loudly(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})
