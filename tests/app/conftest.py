"""Fixtures for the reference SSE app tests: one shared Gunicorn for the HTTP tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest
from sse_helpers import APP_SRC, TOKEN, EventStream, Gunicorn, server_env

# In-process imports (unit tests, the in-thread server) use the working tree too.
sys.path.insert(0, str(APP_SRC))

# Small numbers so the behaviour they control is observable within a fast suite.
KEEPALIVE = 0.3
RETRY_MS = 1500
REPLAY = 5
QUEUE = 16
VERSION = "9.9.9-test"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    env = server_env(
        SSE_PUBLISH_TOKEN=TOKEN,
        SSE_KEEPALIVE_INTERVAL=str(KEEPALIVE),
        SSE_RETRY_MS=str(RETRY_MS),
        SSE_REPLAY_BUFFER=str(REPLAY),
        SSE_SUBSCRIBER_QUEUE=str(QUEUE),
        SSE_APP_VERSION=VERSION,
    )
    gunicorn = Gunicorn.bound(env, tmp_path_factory.mktemp("gunicorn") / "server.log")
    yield gunicorn
    gunicorn.stop()


@pytest.fixture
def port(server: Gunicorn) -> int:
    return server.port


@pytest.fixture
def connect(port: int) -> Iterator[Callable[..., EventStream]]:
    """Open event streams on the shared server; all are closed after the test."""
    opened: list[EventStream] = []

    def _connect(*args: object, **kwargs: object) -> EventStream:
        stream = EventStream(port, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(stream)
        return stream

    yield _connect
    for stream in opened:
        stream.close()
