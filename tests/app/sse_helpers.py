"""Helpers that drive the real app over loopback: server processes, HTTP, a raw SSE reader.

Nothing here mocks a transport: every test talks HTTP/1.1 over a TCP socket to a
server that runs the same stack as production (Gunicorn + Uvicorn worker), or to
plain Uvicorn in a thread where a second process would only cost time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parents[2]
APP_SRC = ROOT / "app" / "src"
WORKER_CLASS = "uvicorn_worker.UvicornH11Worker"
TOKEN = "test-token-4f1c9b"
HOST = "127.0.0.1"
# What systemd does before exec'ing a socket-activated service: the listening socket
# becomes fd 3, LISTEN_FDS counts it, and LISTEN_PID names the process that may use it.
# exec keeps the pid, so the wrapper can name itself (which preexec_fn could not). A
# one-liner `sh -c 'exec ... 3<&N'` is not portable: dash only accepts fds 0-9 there.
_SD_EXEC = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def server_env(**settings: str) -> dict[str, str]:
    """The test process's environment minus anything that could leak into the server."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SSE_", "LISTEN_", "GUNICORN_"))
    }
    # Serve the working tree even if an older sse_app is installed in the venv.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_SRC), env.get("PYTHONPATH")]))
    env.update(settings)
    return env


def gunicorn_argv(*extra: str, graceful_timeout: int = 30, workers: int = 1) -> list[str]:
    # The flags the deploy uses, minus the listener (each test chooses one).
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "sse_app.main:app",
        "--worker-class",
        WORKER_CLASS,
        "--workers",
        str(workers),
        "--graceful-timeout",
        str(graceful_timeout),
        # Gunicorn >= 25.1 otherwise creates $XDG_RUNTIME_DIR/gunicorn.ctl (or ~/.gunicorn).
        "--no-control-socket",
        *extra,
    ]


class Gunicorn:
    """A Gunicorn master process whose output goes to a log file (dumped on failure)."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
            )
        self.port = 0

    @classmethod
    def bound(cls, env: Mapping[str, str], log_path: Path, **kw: int) -> Gunicorn:
        """Gunicorn binding an ephemeral loopback port itself; port read from its log."""
        server = cls(gunicorn_argv("--bind", f"{HOST}:0", **kw), env, log_path)
        server.port = server._port_from_log()
        server.wait_ready()
        return server

    @classmethod
    def socket_activated(
        cls, listener: socket.socket, env: Mapping[str, str], log_path: Path, **kw: int
    ) -> Gunicorn:
        """Gunicorn started the way systemd starts it from a .socket unit."""
        fd = listener.fileno()
        argv = [sys.executable, "-c", _SD_EXEC, str(fd), *gunicorn_argv(**kw)]
        server = cls(argv, env, log_path, pass_fds=(fd,))
        server.port = listener.getsockname()[1]
        server.wait_ready()
        return server

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _port_from_log(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not report its port:\n{self.log()}")

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if request(self.port, "GET", "/healthz", timeout=1.0).status == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not become ready:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> float:
        """Signal the master and return how long it took to exit."""
        if self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gunicorn ignored signal {sig}:\n{self.log()}") from None
        return time.monotonic() - started


@contextlib.contextmanager
def uvicorn_in_thread(app: ASGIApp) -> Iterator[int]:
    """Plain Uvicorn serving `app` on an ephemeral port from a background thread.

    Only for tests that open no event streams: signals cannot be hooked outside the
    main thread, so open streams would hold up this server's shutdown.
    """
    import uvicorn

    listener = socket.create_server((HOST, 0))
    config = uvicorn.Config(app, lifespan="on", loop="asyncio", http="h11", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:  # a parsed JSON document: tests index into it freely
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Response:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def publish(
    port: int, data: object, event: str | None = None, token: str | None = TOKEN
) -> Response:
    payload: dict[str, object] = {"data": data}
    if event is not None:
        payload["event"] = event
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return request(port, "POST", "/notify/publish", json.dumps(payload).encode(), headers)


@dataclass
class Frame:
    """One blank-line-terminated block of the stream, parsed per the SSE spec."""

    raw: str
    comment: str | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return "data" in self.fields

    @property
    def id(self) -> int:
        return int(self.fields["id"][-1])

    @property
    def event(self) -> str | None:
        return self.fields.get("event", [None])[-1]

    @property
    def data(self) -> str:
        return "\n".join(self.fields["data"])


def parse_frame(raw: str) -> Frame:
    frame = Frame(raw)
    for line in raw.split("\n"):
        if line.startswith(":"):
            frame.comment = line[1:]
            continue
        name, _, value = line.partition(":")
        frame.fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    return frame


class EventStream:
    """GET /notify/events over a raw socket, decoding chunked transfer by hand.

    Keeping the raw chunks lets tests check what was flushed as its own write.
    """

    def __init__(
        self,
        port: int,
        path: str = "/notify/events",
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # must be set before connect to shrink the TCP window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}\r\n"
        self.sock.sendall(head.encode())
        self._buf = b""
        self._text = ""
        self.chunks: list[bytes] = []
        self.ended = False  # the terminating zero-length chunk arrived
        self.status, self.headers = self._read_head(timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the event stream in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self._buf += data

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self._buf:
            self._fill(deadline)
        head, _, self._buf = self._buf.partition(marker)
        return head

    def _read_head(self, timeout: float) -> tuple[int, dict[str, str]]:
        head = self._read_until(b"\r\n\r\n", time.monotonic() + timeout).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def read_chunk(self, timeout: float = 5.0) -> bytes | None:
        """The next chunk of the chunked body; None once the body has ended."""
        if self.ended:
            return None
        deadline = time.monotonic() + timeout
        size = int(self._read_until(b"\r\n", deadline).split(b";")[0], 16)
        while len(self._buf) < size + 2:
            self._fill(deadline)
        chunk, self._buf = self._buf[:size], self._buf[size + 2 :]
        if size == 0:
            self.ended = True
            return None
        self.chunks.append(chunk)
        return chunk

    def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame (comment, retry or event); None when the stream ended."""
        deadline = time.monotonic() + timeout
        while "\n\n" not in self._text:
            chunk = self.read_chunk(max(0.0, deadline - time.monotonic()))
            if chunk is None:
                return None
            self._text += chunk.decode()
        raw, _, self._text = self._text.partition("\n\n")
        return parse_frame(raw)

    def next_event(self, timeout: float = 5.0) -> Frame:
        """The next real event, skipping comments and retry hints."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise EOFError("stream ended before an event arrived")
            if frame.is_event:
                return frame

    def events_until_keepalive(self, timeout: float = 5.0) -> list[Frame]:
        """Events that arrive before the next :keepalive (i.e. while the stream is busy)."""
        deadline = time.monotonic() + timeout
        events: list[Frame] = []
        while True:
            frame = self.next_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise EOFError("stream ended before a keepalive")
            if frame.comment == "keepalive":
                return events
            if frame.is_event:
                events.append(frame)

    def frames_until_end(self, timeout: float = 5.0, limit: int | None = None) -> list[Frame]:
        """The frames left before the terminating chunk, each within ``timeout``.

        Fails when more than ``limit`` frames come first; raises when the connection is
        cut without that chunk (EOFError) or a frame is late (TimeoutError).
        """
        frames: list[Frame] = []
        while (frame := self.next_frame(timeout)) is not None:
            frames.append(frame)
            assert limit is None or len(frames) <= limit, f"the stream did not end: {frames}"
        return frames

    def open(self, timeout: float = 5.0) -> EventStream:
        """Consume the `:ok` and `retry:` preamble; afterwards we are subscribed."""
        first = self.next_frame(timeout)
        assert first is not None and first.comment == "ok", first
        second = self.next_frame(timeout)
        assert second is not None and "retry" in second.fields, second
        return self
