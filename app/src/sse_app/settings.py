"""Every environment variable the app reads, parsed and validated in one place.

Bad values fail the worker boot (and so the deploy) instead of surfacing later as
odd runtime behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sse_app import __version__
from sse_app.peers import parse_peers


@dataclass(frozen=True)
class Settings:
    retry_ms: int = 2000
    keepalive_interval: float = 30.0
    replay_buffer: int = 1000
    subscriber_queue: int = 256
    publish_token: str = ""
    app_version: str = __version__
    # the other backends behind the same nginx upstream, host:port (see peers.py)
    peers: tuple[str, ...] = ()

    @property
    def publishing_enabled(self) -> bool:
        return bool(self.publish_token)

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
            peers=parse_peers(env.get("SSE_PEERS", "")),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None  # empty counts as unset, as systemd Environment= often leaves it


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
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
