"""Process lifecycle under the production stack: signals, reloads, socket activation."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sse_helpers import TOKEN, EventStream, Gunicorn, publish, request, server_env

# Failure looks like the full --graceful-timeout (30 s) followed by a SIGKILL; a healthy
# shutdown takes well under a second. The bound is only generous for slow CI machines.
SHUTDOWN_BOUND = 5.0
GRACEFUL_TIMEOUT = 30


@pytest.fixture
def env() -> dict[str, str]:
    # A long keepalive: nothing but the shutdown hook may end these streams.
    return server_env(SSE_PUBLISH_TOKEN=TOKEN, SSE_KEEPALIVE_INTERVAL="60")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    # Stands in for the systemd .socket unit: it owns the socket across restarts.
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield sock
    sock.close()


def _assert_ended_cleanly(stream: EventStream) -> None:
    stream.frames_until_end(timeout=SHUTDOWN_BOUND)
    # The zero-length chunk: the response was finished, not cut off, so the browser
    # simply reconnects after the retry delay.
    assert stream.ended


@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT],
    ids=["SIGTERM", "SIGINT", "SIGQUIT"],
)
def test_stop_with_open_streams_is_prompt(
    tmp_path: Path, env: dict[str, str], sig: signal.Signals
) -> None:
    server = Gunicorn.bound(env, tmp_path / "gunicorn.log", graceful_timeout=GRACEFUL_TIMEOUT)
    streams = [EventStream(server.port).open() for _ in range(4)]
    try:
        elapsed = server.stop(sig)
        assert elapsed < SHUTDOWN_BOUND, server.log()
        assert server.proc.returncode == 0, server.log()
        assert "SIGKILL" not in server.log()
        for stream in streams:
            _assert_ended_cleanly(stream)
    finally:
        for stream in streams:
            stream.close()


def test_reload_with_hup_ends_old_streams_and_keeps_serving(
    tmp_path: Path, env: dict[str, str]
) -> None:
    server = Gunicorn.bound(env, tmp_path / "gunicorn.log", graceful_timeout=GRACEFUL_TIMEOUT)
    try:
        with EventStream(server.port) as old:
            old.open()
            server.proc.send_signal(signal.SIGHUP)
            _assert_ended_cleanly(old)
        # Reconnect like a browser. Until the old worker has closed its listener it may
        # still accept a connection, which it ends at once; the next one is served.
        for _attempt in range(20):
            with EventStream(server.port) as new:
                new.open()
                published = publish(server.port, "after reload")
                with contextlib.suppress(EOFError):
                    assert new.next_event().id == published.json()["id"]
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"no live stream after the reload:\n{server.log()}")
        assert server.proc.poll() is None
    finally:
        assert server.stop() < SHUTDOWN_BOUND


def test_socket_activation_keeps_the_socket_across_restarts(
    tmp_path: Path, env: dict[str, str], listener: socket.socket
) -> None:
    log = tmp_path / "gunicorn.log"
    first = Gunicorn.socket_activated(listener, env, log)
    try:
        assert f"Listening at: http://127.0.0.1:{first.port}" in first.log()
        with EventStream(first.port) as stream:
            stream.open()
            before = publish(first.port, "before restart").json()["id"]
            assert stream.next_event().id == before
            assert first.stop() < SHUTDOWN_BOUND
            _assert_ended_cleanly(stream)
    finally:
        first.stop()

    # Nothing runs now, yet connecting succeeds: the kernel queues it on the socket we
    # (like systemd) still hold, and the next process answers it.
    waiting = socket.create_connection(("127.0.0.1", first.port), timeout=15)
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")

    second = Gunicorn.socket_activated(listener, env, log)
    try:
        reply = b""
        while chunk := waiting.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert reply.endswith(b'{"status":"ok"}')

        # The browser's reconnect: ids keep increasing across the restart, so events
        # published on the new process are delivered after the old Last-Event-ID.
        with EventStream(second.port, headers={"Last-Event-ID": str(before)}) as again:
            again.open()
            after = publish(second.port, "after restart").json()["id"]
            assert after > before
            assert again.next_event().id == after
        assert request(second.port, "GET", "/healthz").status == 200
    finally:
        waiting.close()
        assert second.stop() < SHUTDOWN_BOUND
