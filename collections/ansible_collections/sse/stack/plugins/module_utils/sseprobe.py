"""Server-Sent Events probe: the one stream check behind `sseprobe check` and the modules.

Standard library only and Python 3.9+, because Ansible ships this file (with the two it
imports, ``sseprobe_parsers`` and ``sseprobe_config``) to bare targets as the sse.stack
collection's module_utils ``sseprobe`` for every ``sse_probe`` and ``sse_diagnose`` run.
Nothing of the ``load`` mode (many streams, asyncio: ``sseprobe_load``) is imported here,
so a module run never ships it.

Layers:

* ``SSEParser`` and ``HTTPResponseParser`` (sseprobe_parsers) are sans-IO (feed bytes, get
  items back), so ``check`` and ``load`` run exactly the same parsing code.
* ``ProbeConfig`` validates the arguments; ``Endpoint`` (sseprobe_config) is the one
  connect/TLS helper of both modes (``resolve``, cacert, SNI, failure wording).
* ``check()`` is a thin blocking socket loop on top of them with one overall deadline of
  ``hold + first_byte_timeout``; a healthy run ends ``hold`` seconds after the request was sent.
* The loop reads the response through an ``Exchange`` (the transport): ``HTTP11Exchange``
  here (request bytes out, ``HTTPResponseParser`` in), or ``HTTP2Exchange`` of
  ``sseprobe_http2`` (h2, TLS ALPN ``h2``), which only the controller's CLI imports. The
  event parsing and every timing judgement are this file's, whichever transport carries them.

Raw sockets rather than http.client/urllib: we need exact first-byte timings and the comment
lines (``:ok``, ``:keepalive``) that SSE clients normally swallow.

Checks, each failing under exactly one of these names (see ``CHECKS``):

``connect``        DNS/TCP failure, refused, timeout (or the request could not be sent).
``tls``            TLS handshake or certificate verification failure, or (HTTP/2) the server
                   did not select ``h2`` by ALPN.
``status``         status is not 200, or the response head is malformed: garbage instead of a
                   status line, a header line over 64 KiB, headers that never end (oversized, or
                   not complete within ``first_byte_timeout``), connection closed mid-head.
``content_type``   Content-Type is not text/event-stream (parameters such as charset allowed).
``first_byte``     no body byte within ``first_byte_timeout`` of sending the request.
``first_comment``  the first body line is not ``expect_first`` (default ``:ok``).
``keepalive``      a gap without a ``:keepalive`` comment or an event (from the first body
                   byte, i.e. the ``:ok`` of a healthy stream, to the next keepalive or event,
                   between them, or from the last one to the end of the hold) longer than
                   interval + tolerance. An event counts because a server restarts its
                   keepalive timer on every write: a busy stream is alive without comments.
                   A hold shorter than that limit therefore never requires a keepalive.
``stream_closed``  the stream ended before the hold: EOF, reset, the terminating chunk, or the
                   end of a Content-Length body (HTTP/2: END_STREAM, RST_STREAM, GOAWAY).
``protocol``       broken body framing: an invalid chunk size line, chunk data not followed by
                   CRLF, or an SSE line over 1 MiB (HTTP/2: a frame the h2 library refuses).

After a ``status`` or ``content_type`` failure the body is not read (it is not an event stream),
so the body checks report "skip".
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from ansible_collections.sse.stack.plugins.module_utils.sseprobe_config import (
    RECV_SIZE,
    ConfigError,
    Endpoint,
    ProbeConfig,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_parsers import (
    KEEPALIVE_TEXT,
    Comment,
    Event,
    HTTPResponseParser,
    ProtocolError,
    ResponseHead,
    SSEParser,
)

# The parsers and the config are re-exported: one import serves a check.
__all__ = [
    "CHECKS",
    "Comment",
    "ConfigError",
    "Endpoint",
    "Event",
    "Exchange",
    "HTTP11Exchange",
    "HTTPResponseParser",
    "ProbeConfig",
    "ProbeResult",
    "ProtocolError",
    "ResponseHead",
    "SSEParser",
    "check",
]

CHECKS = (
    "connect",
    "tls",
    "status",
    "content_type",
    "first_byte",
    "first_comment",
    "keepalive",
    "stream_closed",
    "protocol",
)

PROGRESS_TICK = 0.25  # how often progress() is called while waiting


@dataclass
class ProbeResult:
    """Outcome of one probe; ``to_dict()`` is the JSON / Ansible shape."""

    url: str
    failures: list[dict[str, str]] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    first_line: str | None = None
    first_byte_ms: float | None = None
    comments: int = 0
    keepalives: int = 0
    max_gap_s: float | None = None
    held_s: float = 0.0
    events: int = 0
    last_event_id: str | None = None
    retry_ms: int | None = None
    body_bytes: int = 0
    elapsed_s: float = 0.0
    peer: str | None = None
    tls_version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def failed(self, check: str) -> bool:
        return any(f["check"] == check for f in self.failures)

    def fail(self, check: str, message: str, replace: bool = False) -> None:
        """Record a failure; one per check (the first wins unless ``replace``)."""
        for failure in self.failures:
            if failure["check"] == check:
                if replace:
                    failure["message"] = message
                return
        self.failures.append({"check": check, "message": message})

    def to_dict(self) -> dict[str, Any]:
        def sec(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "ok": self.ok,
            "url": self.url,
            "failures": [dict(f) for f in self.failures],
            "checks": dict(self.checks),
            "status": self.status,
            "reason": self.reason,
            "headers": dict(self.headers),
            "content_type": self.content_type,
            "first_line": self.first_line,
            "first_byte_ms": None if self.first_byte_ms is None else round(self.first_byte_ms, 1),
            "comments": self.comments,
            "keepalives": self.keepalives,
            "max_gap_s": sec(self.max_gap_s),
            "held_s": sec(self.held_s),
            "events": self.events,
            "last_event_id": self.last_event_id,
            "retry_ms": self.retry_ms,
            "body_bytes": self.body_bytes,
            "elapsed_s": sec(self.elapsed_s),
            "peer": self.peer,
            "tls_version": self.tls_version,
        }


# --------------------------------------------------------------------------------------------
# Transports: how the response's head and body bytes come off the connection
# --------------------------------------------------------------------------------------------


class Exchange(Protocol):
    """One request/response on a connection, sans-IO: ``start()`` gives the bytes to send
    first, ``feed(received)`` the body bytes of the response it completed, ``outgoing()``
    what the protocol must write back (HTTP/2: acknowledgements, flow control).

    ``head`` is set once the response head is complete, ``error`` (a ProtocolError naming
    ``status`` or ``protocol``) on a malformed response, ``ended`` (why, as a phrase) when
    the response ended before the connection did. After ``feed_eof()``, ``error`` is set if
    the head never completed, else ``eof_reason()`` words the close.
    """

    alpn: tuple[str, ...]  # offered in the TLS handshake
    protocol: str  # for messages: "HTTP/1.1", "HTTP/2"
    head: ResponseHead | None
    error: ProtocolError | None
    ended: str | None

    @property
    def head_started(self) -> bool: ...  # response bytes arrived, head not complete

    def alpn_problem(self, selected: str | None) -> str | None: ...  # a ``tls`` failure
    def start(self) -> bytes: ...
    def feed(self, data: bytes) -> list[bytes]: ...
    def outgoing(self) -> bytes: ...
    def feed_eof(self) -> None: ...
    def eof_reason(self) -> str: ...


class HTTP11Exchange:
    """HTTP/1.1: the request bytes, then HTTPResponseParser on the response (``Connection:
    close``). The default transport, and the only one the modules ship."""

    alpn = ("http/1.1",)
    protocol = "HTTP/1.1"

    def __init__(self, config: ProbeConfig) -> None:
        self.cfg = config
        self.http = HTTPResponseParser()
        self.ended: str | None = None

    @property
    def head(self) -> ResponseHead | None:
        return self.http.head

    @property
    def error(self) -> ProtocolError | None:
        return self.http.error

    @property
    def head_started(self) -> bool:
        return self.http.head_started

    def alpn_problem(self, selected: str | None) -> str | None:
        return None  # a server that does not answer ALPN speaks HTTP/1.1 too

    def start(self) -> bytes:
        return self.cfg.request_bytes()

    def feed(self, data: bytes) -> list[bytes]:
        body = self.http.feed(data)
        if self.http.done and self.http.error is None:
            self.ended = f"response body ended ({self._framing()})"
        return body

    def outgoing(self) -> bytes:
        return b""

    def feed_eof(self) -> None:
        self.http.feed_eof()

    def eof_reason(self) -> str:
        if self.http.truncated:
            detail = "without the terminating chunk" if self.http.chunked else "mid-body"
            return f"server closed the connection {detail}"
        return "server closed the connection"

    def _framing(self) -> str:
        if self.http.chunked:
            return "terminating chunk"
        if self.http.content_length is not None:
            return f"Content-Length {self.http.content_length} reached"
        return "no body"


# --------------------------------------------------------------------------------------------
# The blocking probe
# --------------------------------------------------------------------------------------------

Progress = Callable[[ProbeResult], None]
Transport = Callable[[ProbeConfig], Exchange]
_Sock = Union[socket.socket, ssl.SSLSocket]


class _Probe:
    def __init__(
        self, config: ProbeConfig, progress: Progress | None, transport: Transport
    ) -> None:
        self.cfg = config
        self.progress = progress
        self.res = ProbeResult(url=config.url)
        self.x = transport(config)
        self.endpoint = Endpoint(config, self.x.alpn)
        self.passed: set[str] = set()
        self.start = time.monotonic()
        # One overall deadline: nothing, malformed or not, runs past it.
        self.deadline = self.start + config.hold + config.first_byte_timeout
        self.t0: float | None = None  # request sent
        self.first_at: float | None = None  # first body byte
        self.last_marker = 0.0  # first body byte, then each keepalive
        self.max_gap = 0.0
        self.end_at: float | None = None
        self.end_reason = ""
        self.sse = SSEParser()

    def run(self) -> ProbeResult:
        sock = self._connect()
        try:
            if sock is not None:
                self._exchange(sock)
        finally:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            self._finish()
        return self.res

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> _Sock | None:
        cfg, res, end = self.cfg, self.res, self.endpoint
        try:
            raw = end.dial(cfg.first_byte_timeout)
        except OSError as exc:
            res.fail(*end.failure(exc, "tcp"))
            return None
        peer = raw.getpeername()
        res.peer = f"{peer[0]}:{peer[1]}"
        self.passed.add("connect")
        if not end.https:
            return raw
        try:
            end.context()
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            res.fail("tls", f"cannot load cacert {cfg.cacert}: {exc}")
            return None
        try:
            remaining = self.start + cfg.first_byte_timeout - time.monotonic()
            sock = end.handshake(raw, max(remaining, 0.001))
        except OSError as exc:
            raw.close()
            res.fail(*end.failure(exc, "tls"))
            return None
        res.tls_version = sock.version()
        problem = self.x.alpn_problem(sock.selected_alpn_protocol())
        if problem is not None:
            sock.close()
            res.fail("tls", problem)
            return None
        self.passed.add("tls")
        return sock

    # -- request / response ----------------------------------------------------------------

    def _exchange(self, sock: _Sock) -> None:
        cfg, res = self.cfg, self.res
        try:
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            sock.sendall(self.x.start())
        except OSError as exc:
            res.fail("connect", f"connection lost while sending the request: {exc}")
            return
        self.t0 = time.monotonic()
        first_byte_deadline = min(self.t0 + cfg.first_byte_timeout, self.deadline)
        hold_end = min(self.t0 + cfg.hold, self.deadline)
        limit = cfg.keepalive_limit
        while True:
            now = time.monotonic()
            self._live(now)
            deadline = first_byte_deadline if self.first_at is None else hold_end
            if now >= deadline:
                self.end_at = now
                if self.first_at is None:
                    self._first_byte_timeout()
                else:
                    self.end_reason = "hold"
                return
            wait = deadline - now
            if self.first_at is not None and not res.failed("keepalive"):
                # Wake up when the keepalive becomes late, to report it as soon as it is known.
                wait = min(wait, self.last_marker + limit - now + 0.001)
            if self.progress is not None:
                wait = min(wait, PROGRESS_TICK)
            sock.settimeout(max(wait, 0.001))
            try:
                data = sock.recv(RECV_SIZE)
            except socket.timeout:
                self._late_keepalive(time.monotonic())
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""  # TLS close (with or without close_notify) is just EOF here
            except OSError as exc:
                self._connection_error(exc)
                return
            at = time.monotonic()
            if not data:
                self.end_at = at
                self.x.feed_eof()
                if self.x.error is not None:
                    res.fail(self.x.error.check, self.x.error.message)
                else:
                    self._closed(self.x.eof_reason())
                return
            body = self.x.feed(data)
            head = self.x.head
            if head is not None and "status" not in self.passed and not self._check_head(head):
                self.end_at = at
                return
            for piece in body:
                self._on_body(piece, at)
            self._late_keepalive(at)  # exact: every byte received up to `at` is counted
            error = self.x.error or self.sse.error
            if error is not None:
                self.end_at = at
                res.fail(error.check, error.message)
                return
            if self.x.ended is not None:
                self.end_at = at
                self._closed(self.x.ended)
                return
            reply = self.x.outgoing()  # HTTP/2: SETTINGS/PING acknowledgements, WINDOW_UPDATE
            if reply:
                try:
                    sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
                    sock.sendall(reply)
                except OSError as exc:
                    self._connection_error(exc)
                    return

    def _connection_error(self, exc: OSError) -> None:
        self.end_at = time.monotonic()
        if self.x.head is None:
            self.res.fail("status", f"connection error before the response was complete: {exc}")
        else:
            self._closed(f"connection error: {exc}")

    def _check_head(self, head: ResponseHead) -> bool:
        res = self.res
        res.status = head.status
        res.reason = head.reason
        res.headers = dict(head.headers)
        res.content_type = head.headers.get("content-type")
        if head.status != 200:
            res.fail("status", f"expected HTTP 200, got {head.status} {head.reason}")
            return False
        self.passed.add("status")
        mime = (res.content_type or "").split(";", 1)[0].strip().lower()
        if mime != "text/event-stream":
            res.fail(
                "content_type",
                "expected text/event-stream, got %s"
                % (repr(res.content_type) if res.content_type else "no Content-Type"),
            )
            return False
        self.passed.add("content_type")
        return True

    def _on_body(self, piece: bytes, at: float) -> None:
        res, cfg = self.res, self.cfg
        if not piece:
            return
        if self.first_at is None:
            assert self.t0 is not None
            self.first_at = self.last_marker = at
            res.first_byte_ms = (at - self.t0) * 1000.0
            self.passed.add("first_byte")
        res.body_bytes += len(piece)
        items = self.sse.feed(piece, at)
        if res.first_line is None and self.sse.first_line is not None:
            res.first_line = self.sse.first_line
            if cfg.expect_first is not None:
                if res.first_line == cfg.expect_first:
                    self.passed.add("first_comment")
                else:
                    res.fail(
                        "first_comment",
                        f"first line is {res.first_line!r}, expected {cfg.expect_first!r}",
                    )
        for item in items:
            if isinstance(item, Comment):
                res.comments += 1
                if item.text.strip() == KEEPALIVE_TEXT:
                    res.keepalives += 1
                    gap = item.at - self.last_marker
                    if gap > cfg.keepalive_limit:
                        res.fail("keepalive", self._gap_message(gap))
                    self.max_gap = max(self.max_gap, gap)
                    self.last_marker = item.at
            else:
                res.events += 1
                # activity: the server's keepalive timer restarts on every write
                self.max_gap = max(self.max_gap, item.at - self.last_marker)
                self.last_marker = item.at
        res.retry_ms = self.sse.retry_ms
        if self.sse.id_seen:
            res.last_event_id = self.sse.last_event_id

    def _closed(self, why: str) -> None:
        self.end_reason = "closed"
        if self.first_at is None:
            why += " before any body byte"
        assert self.t0 is not None and self.end_at is not None
        self.res.fail(
            "stream_closed",
            f"{why} after {self.end_at - self.t0:.2f} s (hold {self.cfg.hold:g} s)",
        )

    def _first_byte_timeout(self) -> None:
        res, waited = self.res, self.cfg.first_byte_timeout
        if self.x.head_started:
            res.fail("status", f"response headers not complete within {waited:g} s")
        elif self.x.head is None:
            res.fail("first_byte", f"no response within {waited:g} s of sending the request")
        else:
            res.fail("first_byte", f"no body byte within {waited:g} s of sending the request")

    # -- keepalive judgement ---------------------------------------------------------------

    def _gap_message(self, gap: float) -> str:
        cfg = self.cfg
        limit = (
            f"limit {cfg.keepalive_limit:g} s = keepalive_interval {cfg.keepalive_interval:g}"
            f" + tolerance {cfg.tolerance:g}"
        )
        if self.res.keepalives == 0 and self.res.events == 0:
            return f"no :keepalive comment for {gap:.2f} s after the first body byte ({limit})"
        return f"{gap:.2f} s without a :keepalive comment or an event ({limit})"

    def _late_keepalive(self, now: float) -> None:
        if self.first_at is None or self.res.failed("keepalive"):
            return
        gap = now - self.last_marker
        if gap > self.cfg.keepalive_limit:
            self.res.fail("keepalive", self._gap_message(gap))

    def _live(self, now: float) -> None:
        res = self.res
        res.elapsed_s = now - self.start
        if self.t0 is not None:
            res.held_s = now - self.t0
        if self.first_at is not None:
            res.max_gap_s = max(self.max_gap, now - self.last_marker)
        if self.progress is not None:
            self.progress(res)

    def _finish(self) -> None:
        cfg, res = self.cfg, self.res
        now = time.monotonic()
        end = self.end_at if self.end_at is not None else now
        res.elapsed_s = now - self.start
        res.held_s = end - self.t0 if self.t0 is not None else 0.0
        if self.first_at is not None:
            # The open gap up to the end counts too: keepalives that stop mid-hold are late.
            self.max_gap = max(self.max_gap, end - self.last_marker)
            res.max_gap_s = self.max_gap
            if self.max_gap > cfg.keepalive_limit:
                res.fail("keepalive", self._gap_message(self.max_gap), replace=True)
            else:
                self.passed.add("keepalive")
            if self.end_reason == "hold":
                self.passed.update(("stream_closed", "protocol"))
                if cfg.expect_first is not None and res.first_line is None:
                    res.fail("first_comment", "no complete first line during the hold")
            elif self.end_reason == "closed":
                self.passed.add("protocol")
        failed = {f["check"] for f in res.failures}
        res.checks = {
            name: "fail" if name in failed else "pass" if name in self.passed else "skip"
            for name in CHECKS
        }


def check(
    config: ProbeConfig,
    progress: Progress | None = None,
    transport: Transport = HTTP11Exchange,
) -> ProbeResult:
    """Probe ``config.url`` once and judge it; never raises for network or server faults.

    ``progress`` (optional) is called with the live ProbeResult at least every 0.25 s.
    ``transport`` makes the Exchange that carries the request: HTTP/1.1 unless the caller
    passes another (the CLI's ``--http2``: sseprobe_http2.HTTP2Exchange).
    """
    return _Probe(config, progress, transport).run()
