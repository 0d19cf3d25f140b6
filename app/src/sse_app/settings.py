"""Every environment variable the app reads, parsed and validated in one place.

Bad values fail the worker boot (and so the deploy) instead of surfacing later as
odd runtime behaviour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sse_app import __version__

# A reconnect spread wider than 10 minutes is a typo, not a herd remedy.
MAX_JITTER_MS = 600_000


@dataclass(frozen=True)
class Settings:
    retry_ms: int = 2000
    keepalive_interval: float = 30.0
    replay_buffer: int = 1000
    subscriber_queue: int = 256
    publish_token: str = ""
    app_version: str = __version__
    # SSE_PEERS was set: deprecated and ignored, the peer forwarding is gone (a warning
    # at start for one release, then the variable goes away)
    peers_ignored: bool = False
    # a Redis server every worker and backend shares (see redis_broker.py); empty: events
    # live in this process only (one worker, one backend)
    broker_url: str = ""
    broker_stream: str = "sse:events"
    broker_maxlen: int = 10000
    # each stream's retry: is retry_ms plus a uniform 0..jitter ms, so that clients cut at
    # once (a reload, a restart) come back spread over the jitter, not in one herd
    retry_jitter_ms: int = 0

    @property
    def publishing_enabled(self) -> bool:
        return bool(self.publish_token)

    @property
    def broker_enabled(self) -> bool:
        return bool(self.broker_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            retry_ms=_int(env, "SSE_RETRY_MS", cls.retry_ms, minimum=0),
            keepalive_interval=_positive_float(
                env, "SSE_KEEPALIVE_INTERVAL", cls.keepalive_interval
            ),
            replay_buffer=_int(env, "SSE_REPLAY_BUFFER", cls.replay_buffer, minimum=0),
            subscriber_queue=_int(env, "SSE_SUBSCRIBER_QUEUE", cls.subscriber_queue, minimum=1),
            # Whitespace around a token is always a templating accident, never intended.
            publish_token=env.get("SSE_PUBLISH_TOKEN", "").strip(),
            app_version=env.get("SSE_APP_VERSION", "").strip() or __version__,
            peers_ignored=_raw(env, "SSE_PEERS") is not None,
            broker_url=_broker_url(env),
            broker_stream=_broker_stream(env),
            broker_maxlen=_int(env, "SSE_BROKER_MAXLEN", cls.broker_maxlen, minimum=1),
            retry_jitter_ms=_int(
                env, "SSE_RETRY_JITTER_MS", cls.retry_jitter_ms, minimum=0, maximum=MAX_JITTER_MS
            ),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None  # empty counts as unset, as systemd Environment= often leaves it


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0 or value == float("inf"):  # `not >` also rejects NaN
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


_STREAM_KEY = re.compile(r"[A-Za-z0-9_.:{}-]{1,128}")


def _broker_url(env: Mapping[str, str]) -> str:
    raw = _raw(env, "SSE_BROKER_URL")
    if raw is None:
        return ""
    # never echo the value: it holds the broker's password
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("SSE_BROKER_URL must be a redis://, rediss:// or unix:// URL")
    if any(ord(c) < 33 or ord(c) == 127 for c in raw):
        raise ValueError("SSE_BROKER_URL must not hold spaces or control characters")
    return raw


def _broker_stream(env: Mapping[str, str]) -> str:
    raw = _raw(env, "SSE_BROKER_STREAM")
    if raw is None:
        return Settings.broker_stream
    if not _STREAM_KEY.fullmatch(raw):
        raise ValueError(
            "SSE_BROKER_STREAM must be a key of 1-128 letters, digits and _ . : { } -,"
            f" got {raw!r}"
        )
    return raw
