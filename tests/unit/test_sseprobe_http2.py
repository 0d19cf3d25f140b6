"""Tests for `sseprobe check --http2` (module_utils/sseprobe_http2.py: the HTTP/2 transport of
the one probe) against an in-process HTTP/2 server built on the same h2 library.

The server (loopback, TLS with ALPN `h2`, one daemon thread per connection) serves one
(mis)behaviour per path, as tests/unit/sse_fault_server.py does for HTTP/1.1. Each test
names the check that must fail, so each proves the check can fail over HTTP/2.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ansible_collections.sse.stack.plugins.module_utils.sseprobe import CHECKS, ProbeConfig, check
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_http2 import HTTP2Exchange
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import RequestReceived
from h2.exceptions import H2Error
from test_sseprobe import CLI, FAST, FAST_ARGS, failed, make_tls_files

INTERVAL = 0.3  # keepalive period of the healthy streams (FAST: limit 0.5 s)
MAX_LIFETIME = 10.0
HOLD = 1.0
_EVENT = b"id: 7\nevent: greet\ndata: hello\n\n"


class _Stream:
    """One request on one connection, with helpers that stop quietly once the client left."""

    def __init__(self, server: H2Server, sock: ssl.SSLSocket, conn: H2Connection, sid: int):
        self.server, self.sock, self.conn, self.sid = server, sock, conn, sid
        self.until = time.monotonic() + MAX_LIFETIME

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def head(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        fields = [(":status", str(status)), ("content-type", content_type)]
        self.conn.send_headers(self.sid, [*fields, ("cache-control", "no-cache")])
        self.flush()

    def data(self, payload: bytes, end: bool = False) -> None:
        # HTTP/2 flow control: past the client's window, wait for its WINDOW_UPDATE
        while self.conn.local_flow_control_window(self.sid) < len(payload):
            received = self.sock.recv(65536)
            if not received:
                raise OSError("client closed")
            self.conn.receive_data(received)
            self.flush()
        self.conn.send_data(self.sid, payload, end_stream=end)
        self.flush()

    def sleep(self, seconds: float) -> bool:
        seconds = min(seconds, self.until - time.monotonic())
        return seconds > 0 and not self.server.stopping.wait(seconds)

    def keepalives(self) -> None:
        while self.sleep(INTERVAL):
            self.data(b":keepalive\n\n")


def healthy(s: _Stream) -> None:
    s.head()
    s.data(b":ok\n\n" + _EVENT)
    s.keepalives()


def late_keepalive(s: _Stream) -> None:
    s.head()
    s.data(b":ok\n\n")
    if s.sleep(0.2):
        s.data(b":keepalive\n\n")
    if s.sleep(0.8):  # over the 0.5 s limit
        s.data(b":keepalive\n\n")
    s.keepalives()


def no_ok(s: _Stream) -> None:
    s.head()
    s.data(b"data: hi\n\n")
    s.keepalives()


def end_early(s: _Stream) -> None:
    s.head()
    s.data(b":ok\n\n")
    if s.sleep(0.2):
        s.data(b"", end=True)
    s.sleep(MAX_LIFETIME)


def reset_early(s: _Stream) -> None:
    s.head()
    s.data(b":ok\n\n")
    if s.sleep(0.2):
        s.conn.reset_stream(s.sid, ErrorCodes.INTERNAL_ERROR)
        s.flush()
    s.sleep(MAX_LIFETIME)


def close_early(s: _Stream) -> None:
    s.head()
    s.data(b":ok\n\n")
    s.sleep(0.2)  # then the handler returns: the connection closes without END_STREAM


def status_502(s: _Stream) -> None:
    s.head(502, "text/html")
    s.data(b"<h1>Bad Gateway</h1>", end=True)
    s.sleep(MAX_LIFETIME)


def wrong_type(s: _Stream) -> None:
    s.head(200, "text/plain")
    s.data(b":ok\n\n")
    s.keepalives()


def bulk(s: _Stream) -> None:
    # about 4 x the default 64 KiB window of events at once: the probe must give the window back
    s.head()
    s.data(b":ok\n\n")
    for i in range(256):
        s.data(b"id: %d\ndata: %s\n\n" % (i, b"x" * 1000))
    s.keepalives()


def buffered(s: _Stream) -> None:
    # what a buffering proxy does to a stream of tiny comments: nothing reaches the client
    s.sleep(MAX_LIFETIME)


PATHS: dict[str, Callable[[_Stream], None]] = {
    "/healthy": healthy,
    "/late-keepalive": late_keepalive,
    "/no-ok": no_ok,
    "/end-early": end_early,
    "/reset-early": reset_early,
    "/close-early": close_early,
    "/status-502": status_502,
    "/wrong-type": wrong_type,
    "/buffered": buffered,
    "/bulk": bulk,
}


class H2Server:
    """TLS on 127.0.0.1 (ephemeral port) offering ``alpn``; HTTP/2 when ``h2`` is chosen."""

    def __init__(self, cert: str, key: str, alpn: tuple[str, ...] = ("h2",)) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(list(alpn))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.requests: list[dict[str, str]] = []
        self.protocols: list[str | None] = []
        self.handshakes = 0  # connections accepted

    def last_protocol(self) -> str | None:
        """The ALPN choice of the newest connection (its thread records it a moment after
        the client's handshake ends)."""
        count = self.handshakes
        deadline = time.monotonic() + 2.0
        while len(self.protocols) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.protocols) == count, "the server thread recorded no handshake"
        return self.protocols[-1]

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> H2Server:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.handshakes += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(MAX_LIFETIME)
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as sock:
                self.protocols.append(sock.selected_alpn_protocol())
                if sock.selected_alpn_protocol() != "h2":
                    sock.sendall(b"HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n")
                    return
                conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
                conn.initiate_connection()
                sock.sendall(conn.data_to_send())
                request = self._request(sock, conn)
                if request is None:
                    return
                sid, headers = request
                self.requests.append(headers)
                handler = PATHS.get(headers[":path"].split("?")[0], buffered)
                handler(_Stream(self, sock, conn, sid))
        except (OSError, H2Error):
            pass  # the client went away: that ends the handler

    @staticmethod
    def _request(sock: ssl.SSLSocket, conn: H2Connection) -> tuple[int, dict[str, str]] | None:
        while True:
            data = sock.recv(65536)
            if not data:
                return None
            for event in conn.receive_data(data):
                if isinstance(event, RequestReceived):
                    sock.sendall(conn.data_to_send())
                    return event.stream_id, dict(event.headers)
            sock.sendall(conn.data_to_send())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_tls_files(tmp_path_factory)


@pytest.fixture(scope="module")
def h2_server(tls_files: tuple[str, str]) -> Iterator[H2Server]:
    with H2Server(*tls_files) as srv:
        yield srv


@pytest.fixture(scope="module")
def h1_only_server(tls_files: tuple[str, str]) -> Iterator[H2Server]:
    with H2Server(*tls_files, alpn=("http/1.1",)) as srv:
        yield srv


def probe2(url: str, cacert: str, hold: float = HOLD, **kw: Any) -> dict[str, Any]:
    """check() over HTTP/2, within the bound every probe keeps, with every check named."""
    cfg = ProbeConfig(url=url, hold=hold, cacert=cacert, **{**FAST, **kw})
    start = time.monotonic()
    result = check(cfg, transport=HTTP2Exchange).to_dict()
    assert time.monotonic() - start <= cfg.hold + cfg.first_byte_timeout + 1.0
    assert set(result["checks"]) == set(CHECKS)
    return result


def test_healthy_stream_passes_over_http2(h2_server: H2Server, tls_files: tuple[str, str]) -> None:
    r = probe2(h2_server.url("/healthy?x=1"), tls_files[0], headers={"X-Probe": "h2"})
    assert r["ok"] is True, r["failures"]
    assert all(state == "pass" for state in r["checks"].values())
    assert r["status"] == 200 and r["reason"] == "OK"
    assert r["content_type"] == "text/event-stream"
    assert r["first_line"] == ":ok"
    assert r["first_byte_ms"] is not None and r["first_byte_ms"] < 500
    assert r["keepalives"] >= 2 and r["max_gap_s"] <= 0.5
    assert r["events"] == 1 and r["last_event_id"] == "7"
    assert r["held_s"] >= HOLD
    sent = next(h for h in h2_server.requests if h[":path"] == "/healthy?x=1")
    assert sent[":method"] == "GET" and sent[":scheme"] == "https"
    assert sent[":authority"] == f"127.0.0.1:{h2_server.port}"
    assert sent["accept"] == "text/event-stream"
    assert sent["x-probe"] == "h2"
    assert "connection" not in sent and "host" not in sent  # forbidden in HTTP/2


def test_a_long_stream_never_stalls_on_flow_control(
    h2_server: H2Server, tls_files: tuple[str, str]
) -> None:
    r = probe2(h2_server.url("/bulk"), tls_files[0])
    assert r["ok"] is True, r["failures"]
    assert r["events"] == 256 and r["last_event_id"] == "255"
    assert r["body_bytes"] > 3 * 65535  # more than three windows


@pytest.mark.parametrize(
    ("path", "check_name", "text"),
    [
        ("/late-keepalive", "keepalive", "without a :keepalive comment"),
        ("/no-ok", "first_comment", "'data: hi'"),
        ("/end-early", "stream_closed", "END_STREAM"),
        ("/reset-early", "stream_closed", "RST_STREAM INTERNAL_ERROR"),
        ("/close-early", "stream_closed", "without ending the stream"),
        ("/status-502", "status", "got 502 Bad Gateway"),
        ("/wrong-type", "content_type", "'text/plain'"),
        ("/buffered", "first_byte", "no response within"),
    ],
)
def test_fault_fails_its_check_over_http2(
    h2_server: H2Server, tls_files: tuple[str, str], path: str, check_name: str, text: str
) -> None:
    r = probe2(h2_server.url(path), tls_files[0], hold=1.4)
    assert failed(r) == [check_name], r["failures"]
    assert text in r["failures"][0]["message"]
    assert r["checks"][check_name] == "fail"


def test_ok_arrives_at_once_or_fails(h2_server: H2Server, tls_files: tuple[str, str]) -> None:
    # ":ok at once": the first body byte within first_byte_timeout of the request
    r = probe2(h2_server.url("/buffered"), tls_files[0], first_byte_timeout=0.4)
    assert failed(r) == ["first_byte"]
    assert r["first_line"] is None and r["checks"]["first_comment"] == "skip"


def test_server_without_h2_is_a_clear_tls_failure(
    h1_only_server: H2Server, tls_files: tuple[str, str]
) -> None:
    r = probe2(h1_only_server.url("/healthy"), tls_files[0])
    assert failed(r) == ["tls"]
    message = r["failures"][0]["message"]
    assert "does not speak HTTP/2" in message and "'h2'" in message, message
    assert r["checks"]["status"] == "skip"
    # the probe offered h2 only: no protocol in common, so the server chose none
    assert h1_only_server.last_protocol() is None
    assert "selected no protocol" in message


def test_http11_probe_is_unchanged_by_the_transport(
    h1_only_server: H2Server, tls_files: tuple[str, str]
) -> None:
    # the default transport still offers http/1.1 (and never h2) by ALPN
    cfg = ProbeConfig(url=h1_only_server.url("/x"), hold=0.3, cacert=tls_files[0], **FAST)
    check(cfg)
    assert h1_only_server.last_protocol() == "http/1.1"


def test_cli_http2_json(h2_server: H2Server, tls_files: tuple[str, str]) -> None:
    url = h2_server.url("/healthy")
    args = ["check", url, "--http2", "--cacert", tls_files[0], "--hold", "0.8", "--json"]
    proc = subprocess.run(
        [*CLI, *args, *FAST_ARGS],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["keepalives"] >= 1
    # the same JSON fields as an HTTP/1.1 check
    h1 = check(ProbeConfig(url="http://127.0.0.1:9/", hold=0.1, first_byte_timeout=0.1))
    assert set(data) == set(h1.to_dict())


def test_cli_http2_human_fail(h2_server: H2Server, tls_files: tuple[str, str]) -> None:
    url = h2_server.url("/late-keepalive")
    proc = subprocess.run(
        [*CLI, "check", url, "--http2", "--cacert", tls_files[0], "--hold", "1.4", *FAST_ARGS],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].endswith("(HTTP/2)")
    assert "FAIL  keepalive" in proc.stdout and "PASS  first_comment" in proc.stdout


def test_cli_http2_needs_https() -> None:
    proc = subprocess.run(
        [*CLI, "check", "http://127.0.0.1:9/", "--http2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--http2" in proc.stderr and "https://" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_http2_without_h2_installed(tmp_path: Any) -> None:
    # a controller where pip installed the probe without the http2 extra: a usage error
    # that says what to install, not a traceback (h2 hidden by a module that refuses import)
    (tmp_path / "h2.py").write_text("raise ImportError('no module named h2 (test)')\n")
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); " + (
        "from ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli import main; "
        "sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), "check", "https://127.0.0.1:9/", "--http2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 2, proc.stderr
    assert "[http2]" in proc.stderr and "Traceback" not in proc.stderr
