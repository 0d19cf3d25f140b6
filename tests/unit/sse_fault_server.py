"""A standard-library SSE server for the probe tests: each path serves one (mis)behaviour.

Binds 127.0.0.1 on an ephemeral port only. Every handler runs in its own daemon thread and
ends when the client goes away, the server is closed, or MAX_LIFETIME passes, so a test that
abandons a connection never leaves a busy thread behind.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 0.3  # keepalive period of the healthy streams
MAX_LIFETIME = 10.0

_SSE_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
_CHUNKED_HEAD = (
    _SSE_HEAD + "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
).encode()
_PLAIN_HEAD = (_SSE_HEAD + "Connection: close\r\n\r\n").encode()
_EVENT = "id: 7\nevent: greet\ndata: hello\ndata: world\n\n"


def chunk(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Conn:
    """One accepted connection with helpers that stop quietly when the test is over."""

    def __init__(self, server: FaultServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.until = time.monotonic() + MAX_LIFETIME

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def sleep(self, seconds: float) -> bool:
        """Wait; False once the server is closing or the lifetime is over."""
        seconds = min(seconds, self.until - time.monotonic())
        return seconds > 0 and not self.server.stopping.wait(seconds)

    def keepalives(self, encode: Callable[[str], bytes], text: str = ":keepalive\n\n") -> None:
        while self.sleep(INTERVAL):
            self.send(encode(text))

    def idle(self) -> None:
        while self.sleep(0.1):
            pass


def _raw(text: str) -> bytes:
    return text.encode()


def healthy(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n") + chunk(_EVENT))
    c.keepalives(chunk)


def healthy_plain(c: _Conn) -> None:
    # Neither chunked nor Content-Length: the body runs until the connection closes.
    c.send(_PLAIN_HEAD + b":ok\n\n" + _EVENT.encode())
    c.keepalives(_raw)


def healthy_crlf(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\r\n\r\n") + chunk(_EVENT.replace("\n", "\r\n")))
    c.keepalives(chunk, ":keepalive\r\n\r\n")


def no_ok(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk("data: hi\n\n"))
    c.keepalives(chunk)


def no_keepalive(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    c.idle()


def late_keepalive(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    if c.sleep(INTERVAL):
        c.send(chunk(":keepalive\n\n"))
    if c.sleep(3 * INTERVAL):
        c.send(chunk(":keepalive\n\n"))
    c.keepalives(chunk)


def busy_no_keepalive(c: _Conn) -> None:
    # a server that restarts its keepalive timer on every write: events, never a comment
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    n = 0
    while c.sleep(INTERVAL / 2):
        n += 1
        c.send(chunk(f"id: {n}\ndata: tick\n\n"))


def events_then_silence(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    for n in range(1, 4):
        if c.sleep(INTERVAL / 2):
            c.send(chunk(f"id: {n}\ndata: tick\n\n"))
    c.idle()


def _sized(c: _Conn, status: bytes, content_type: bytes, body: bytes) -> None:
    """A response with a Content-Length body, then the connection stays open."""
    c.send(
        b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (status, content_type, len(body), body)
    )
    c.idle()


def status_502(c: _Conn) -> None:
    _sized(c, b"502 Bad Gateway", b"text/html", b"<html>bad gateway</html>")


def wrong_type(c: _Conn) -> None:
    c.send(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk(":ok\n\n")
    )
    c.keepalives(chunk)


def close_early(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    if c.sleep(INTERVAL):
        c.send(chunk(":keepalive\n\n") + b"0\r\n\r\n")


def close_abrupt(c: _Conn) -> None:
    # What a dying backend behind a proxy looks like: no terminating chunk.
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n"))
    c.sleep(INTERVAL)


def content_length(c: _Conn) -> None:
    _sized(c, b"200 OK", b"text/event-stream", b":ok\n\n:keepalive\n\n")


def no_body(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD)
    c.idle()


def silent(c: _Conn) -> None:
    c.idle()


def garbage(c: _Conn) -> None:
    c.send(b"\x00\x17\x03garbage, not HTTP at all")
    c.idle()


def broken_chunked(c: _Conn) -> None:
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n") + b"zz\r\n:keepalive\n\n\r\n")
    c.idle()


def overlong_chunk(c: _Conn) -> None:
    # Declares 3 bytes, sends more: the data is not followed by CRLF.
    c.send(_CHUNKED_HEAD + chunk(":ok\n\n") + b"3\r\n:keepalive\n\n\r\n")
    c.idle()


def huge_header(c: _Conn) -> None:
    c.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    c.idle()


def endless_headers(c: _Conn) -> None:
    c.send(_SSE_HEAD.encode())
    n = 0
    while c.sleep(0.05):
        n += 1
        c.send(b"X-More-%d: yes\r\n" % n)


ROUTES: dict[str, Callable[[_Conn], None]] = {
    "/healthy": healthy,
    "/healthy-plain": healthy_plain,
    "/healthy-crlf": healthy_crlf,
    "/no-ok": no_ok,
    "/no-keepalive": no_keepalive,
    "/late-keepalive": late_keepalive,
    "/busy-no-keepalive": busy_no_keepalive,
    "/events-then-silence": events_then_silence,
    "/status-502": status_502,
    "/wrong-type": wrong_type,
    "/close-early": close_early,
    "/close-abrupt": close_abrupt,
    "/content-length": content_length,
    "/no-body": no_body,
    "/silent": silent,
    "/garbage": garbage,
    "/broken-chunked": broken_chunked,
    "/overlong-chunk": overlong_chunk,
    "/huge-header": huge_header,
    "/endless-headers": endless_headers,
}


class FaultServer:
    """Threaded fault server; use as a context manager. ``requests`` records (path, headers)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        self._thread.join(2)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(5)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_side=True)
            path, headers = self._read_request(sock)
            self.requests.append((path, headers))
            ROUTES.get(path.split("?", 1)[0], silent)(_Conn(self, sock))
        except (OSError, ValueError):
            pass  # the client went away or refused our certificate: expected in fault tests
        finally:
            sock.close()

    @staticmethod
    def _read_request(sock: socket.socket) -> tuple[str, dict[str, str]]:
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                raise ValueError("client closed before the request ended")
            data += more
        lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return path, headers
