"""Server-Sent Events probe: the one implementation behind `sseprobe` and the sse_probe module.

Standard library only and Python 3.9+, because Ansible ships this file to bare targets as
the sse.stack collection's module_utils ``sseprobe``.

Layers:

* ``SSEParser`` and ``HTTPResponseParser`` are sans-IO (feed bytes, get items back), so the
  blocking ``check`` and the asyncio ``load`` run exactly the same parsing code.
* ``check()`` is a thin blocking socket loop on top of them with one overall deadline of
  ``hold + first_byte_timeout``; a healthy run ends ``hold`` seconds after the request was sent.
* ``load()`` holds many streams on one asyncio loop (``bin/sseprobe load``, the benchmark);
  loopback targets only, bounded by ``ramp + hold``; what it counts is in its docstring.

Raw sockets rather than http.client/urllib: we need exact first-byte timings and the comment
lines (``:ok``, ``:keepalive``) that SSE clients normally swallow.

Checks, each failing under exactly one of these names (see ``CHECKS``):

``connect``        DNS/TCP failure, refused, timeout (or the request could not be sent).
``tls``            TLS handshake or certificate verification failure.
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
                   end of a Content-Length body.
``protocol``       broken body framing: an invalid chunk size line, chunk data not followed by
                   CRLF, or an SSE line over 1 MiB.

After a ``status`` or ``content_type`` failure the body is not read (it is not an event stream),
so the body checks report "skip".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import json
import math
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union
from urllib.parse import urlsplit

__all__ = [
    "CHECKS",
    "Comment",
    "ConfigError",
    "Event",
    "HTTPResponseParser",
    "LoadConfig",
    "LoadResult",
    "ProbeConfig",
    "ProbeResult",
    "ProtocolError",
    "ResponseHead",
    "SSEParser",
    "check",
    "load",
    "nofile_budget",
    "percentiles",
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

MAX_HEADER_LINE = 64 * 1024  # a longer response header line is treated as a broken server
MAX_HEAD = 256 * 1024  # total response head; bounds "headers that never end"
MAX_CHUNK_LINE = 4 * 1024  # chunk size line incl. extensions
MAX_SSE_LINE = 1024 * 1024  # bounds memory when a server never sends a line ending
RECV_SIZE = 65536
PROGRESS_TICK = 0.25  # how often progress() is called while waiting
KEEPALIVE_TEXT = "keepalive"
USER_AGENT = "sseprobe/1"


class ProtocolError(Exception):
    """A malformed response; ``check`` names the failing check (``status`` or ``protocol``)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


class ConfigError(ValueError):
    """An invalid probe argument; ``argument`` is its ProbeConfig field name."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument} {message}")
        self.argument = argument
        self.message = message


def _preview(data: bytes | bytearray, limit: int = 60) -> str:
    """Short printable rendering of raw bytes for failure messages."""
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")


# --------------------------------------------------------------------------------------------
# SSE parsing (sans-IO), per https://html.spec.whatwg.org/multipage/server-sent-events.html
# --------------------------------------------------------------------------------------------


@dataclass
class Comment:
    """A comment line (``:text``); ``text`` excludes the colon, ``at`` is the receive time."""

    text: str
    at: float


@dataclass
class Event:
    """A dispatched event; ``id`` is the last event ID at dispatch time."""

    type: str
    data: str
    id: str
    at: float


_EOL = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Incremental event-stream parser: ``feed(bytes, at)`` returns Comment and Event items.

    Handles CR, LF and CRLF line endings (also a CRLF split across feeds), a leading BOM,
    multi-line data, ``event``, ``id`` (ignored if it contains NUL) and ``retry``. A line over
    ``max_line`` bytes sets ``error`` (a ProtocolError) and stops parsing; feed never raises, so
    the items completed before the fault are not lost.
    """

    def __init__(self, max_line: int = MAX_SSE_LINE) -> None:
        self._buf = bytearray()
        self._max_line = max_line
        self._skip_lf = False  # previous feed ended in CR: a leading LF completes that CRLF
        self._data: list[str] = []
        self._event_type = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.id_seen = False
        self.retry_ms: int | None = None
        self.first_line: str | None = None
        self.lines = 0
        self.error: ProtocolError | None = None

    def feed(self, data: bytes, at: float | None = None) -> list[Comment | Event]:
        """Parse ``data`` (received at monotonic time ``at``) and return the completed items."""
        if self.error is not None:
            return []
        if at is None:
            at = time.monotonic()
        if self._skip_lf and data:
            if data[:1] == b"\n":
                data = data[1:]
            self._skip_lf = False
        buf = self._buf
        buf += data
        items: list[Comment | Event] = []
        pos = 0
        while True:
            m = _EOL.search(buf, pos)
            if m is None:
                break
            line = bytes(buf[pos : m.start()])
            pos = m.end()
            if m.group() == b"\r" and pos == len(buf):
                # Can't tell yet whether an LF follows; finish the line now (for the
                # timestamp) and swallow that LF in the next feed.
                self._skip_lf = True
            item = self._line(line, at)
            if item is not None:
                items.append(item)
        del buf[:pos]
        if len(buf) > self._max_line:
            self.error = ProtocolError(
                "protocol", f"event-stream line longer than {self._max_line} bytes"
            )
        return items

    def _line(self, raw: bytes, at: float) -> Comment | Event | None:
        text = raw.decode("utf-8", "replace")
        if self.lines == 0 and text.startswith("\ufeff"):
            text = text[1:]
        self.lines += 1
        if self.first_line is None:
            self.first_line = text
        if not text:
            return self._dispatch(at)
        if text.startswith(":"):
            return Comment(text[1:], at)
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
                self.id_seen = True
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self, at: float) -> Event | None:
        self.last_event_id = self._id_buffer
        if not self._data:
            self._event_type = ""
            return None
        event = Event(self._event_type or "message", "\n".join(self._data), self.last_event_id, at)
        self._data = []
        self._event_type = ""
        return event


# --------------------------------------------------------------------------------------------
# HTTP/1.1 response parsing (sans-IO)
# --------------------------------------------------------------------------------------------


@dataclass
class ResponseHead:
    """A parsed response head; ``headers`` has lower-cased names, repeats joined by ", "."""

    http_version: str
    status: int
    reason: str
    headers: dict[str, str]


_STATUS_RE = re.compile(rb"HTTP/(\d\.\d) (\d{3})(?: (.*))?")
_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class HTTPResponseParser:
    """Incremental HTTP/1.x response parser: the head, then the body de-framed.

    ``feed(bytes)`` returns the body pieces it completed (chunked, Content-Length or
    read-until-close framing) and sets ``head`` once the head is complete and ``done`` once
    the body is complete. ``feed_eof()`` records the end of input. Neither raises: malformed
    input sets ``error`` (a ProtocolError whose check is ``status`` for a bad head, ``protocol``
    for broken chunk framing) and stops parsing, keeping the body pieces completed before it.
    """

    def __init__(self, max_header_line: int = MAX_HEADER_LINE, max_head: int = MAX_HEAD) -> None:
        self._buf = bytearray()
        self._max_header_line = max_header_line
        self._max_head = max_head
        self._state = "status_line"
        self._status: tuple[str, int, str] | None = None
        self._fields: list[list[str]] = []
        self._head_bytes = 0
        self._remaining = 0
        self.bytes_in = 0
        self.head: ResponseHead | None = None
        self.chunked = False
        self.content_length: int | None = None
        self.done = False
        self.truncated = False  # EOF before the framing said the body was complete
        self.error: ProtocolError | None = None

    @property
    def head_started(self) -> bool:
        """True once any response byte arrived but the head is not complete yet."""
        return self.head is None and self.bytes_in > 0

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the body bytes it completed (possibly empty)."""
        self.bytes_in += len(data)
        if self.done or self.error is not None:
            return []  # bytes after the message: ignored (we sent Connection: close)
        self._buf += data
        out: list[bytes] = []
        try:
            while not self.done and self._step(out):
                pass
        except ProtocolError as exc:
            self.error = exc
        return out

    def feed_eof(self) -> None:
        """Record end of input; sets ``error`` (``status``) if the head was incomplete."""
        if self.error is not None:
            return
        if self.head is None:
            self.error = ProtocolError(
                "status",
                "connection closed without any response"
                if self.bytes_in == 0
                else "connection closed before the response headers were complete",
            )
        elif not self.done:
            # Only a read-until-close body legitimately ends at EOF.
            self.truncated = self._state != "close"
            self._finish()

    def _finish(self) -> None:
        self._state = "done"
        self.done = True

    def _take_line(self, check: str, what: str, limit: int) -> bytes | None:
        """Pop one LF-terminated line (CR stripped) or return None if none is complete."""
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) > limit:
                raise ProtocolError(check, f"{what} longer than {limit} bytes")
            return None
        if i > limit:
            raise ProtocolError(check, f"{what} longer than {limit} bytes")
        line = bytes(self._buf[:i])
        del self._buf[: i + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _step(self, out: list[bytes]) -> bool:
        """Advance the state machine once; False means more input is needed."""
        state = self._state
        if state in ("status_line", "header"):
            return self._step_head()
        if state == "chunk_size":
            line = self._take_line("protocol", "chunk size line", MAX_CHUNK_LINE)
            if line is None:
                return False
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX_RE.fullmatch(size_text):
                raise ProtocolError("protocol", f"invalid chunk size line {_preview(line)}")
            size = int(size_text, 16)
            if size == 0:
                self._state = "trailer"
            else:
                self._remaining = size
                self._state = "chunk_data"
            return True
        if state == "chunk_data":
            if not self._buf:
                return False
            piece = bytes(self._buf[: self._remaining])
            del self._buf[: len(piece)]
            self._remaining -= len(piece)
            out.append(piece)
            if self._remaining == 0:
                self._state = "chunk_end"
            return True
        if state == "chunk_end":
            head = bytes(self._buf[:2])
            if head[:1] == b"\n" or head == b"\r\n":
                del self._buf[: 1 if head[:1] == b"\n" else 2]
                self._state = "chunk_size"
                return True
            if head in (b"", b"\r"):
                return False
            raise ProtocolError(
                "protocol",
                "chunk data not followed by CRLF (chunk longer than its declared size?): "
                + _preview(self._buf),
            )
        if state == "trailer":
            line = self._take_line("protocol", "chunk trailer line", self._max_header_line)
            if line is None:
                return False
            if line == b"":
                self._finish()
            return True
        if state == "length":
            if not self._buf:
                return False
            piece = bytes(self._buf[: self._remaining])
            del self._buf[: len(piece)]
            self._remaining -= len(piece)
            out.append(piece)
            if self._remaining == 0:
                self._finish()
            return True
        if state == "close":
            if not self._buf:
                return False
            out.append(bytes(self._buf))
            self._buf.clear()
            return False
        return False

    def _step_head(self) -> bool:
        if self._state == "status_line":
            # Fail fast on garbage instead of waiting for a line ending that may never come.
            prefix = bytes(self._buf[:5])
            if not b"HTTP/".startswith(prefix):
                raise ProtocolError(
                    "status", f"expected an HTTP status line, got {_preview(self._buf)}"
                )
        line = self._take_line("status", "response header line", self._max_header_line)
        if line is None:
            return False
        self._head_bytes += len(line) + 2
        if self._head_bytes > self._max_head:
            raise ProtocolError("status", f"response headers exceed {self._max_head} bytes")
        if self._state == "status_line":
            m = _STATUS_RE.fullmatch(line)
            if m is None:
                raise ProtocolError("status", f"malformed status line {_preview(line)}")
            reason = (m.group(3) or b"").decode("latin-1").strip()
            self._status = (m.group(1).decode("ascii"), int(m.group(2)), reason)
            self._state = "header"
            return True
        if line == b"":
            self._end_head()
            return True
        if line[:1] in (b" ", b"\t") and self._fields:
            # Obsolete line folding: continuation of the previous header value.
            self._fields[-1][1] += " " + line.strip().decode("latin-1")
            return True
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise ProtocolError("status", f"malformed header line {_preview(line)}")
        self._fields.append([name.decode("ascii").lower(), value.strip().decode("latin-1")])
        return True

    def _end_head(self) -> None:
        assert self._status is not None
        version, status, reason = self._status
        headers: dict[str, str] = {}
        for name, value in self._fields:
            headers[name] = headers[name] + ", " + value if name in headers else value
        if 100 <= status < 200 and status != 101:
            # Interim response (e.g. 100 Continue): the real head follows.
            self._status = None
            self._fields = []
            self._state = "status_line"
            return
        self.head = ResponseHead(version, status, reason, headers)
        te = headers.get("transfer-encoding")
        if status in (204, 304) or 100 <= status < 200:
            self._finish()
        elif te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] == "chunked":
                self.chunked = True
                self._state = "chunk_size"
            else:
                self._state = "close"
        elif "content-length" in headers:
            values = {v.strip() for v in headers["content-length"].split(",")}
            value = values.pop() if len(values) == 1 else ""
            if not value.isdigit():
                raise ProtocolError(
                    "status", "invalid Content-Length {!r}".format(headers["content-length"])
                )
            self.content_length = int(value)
            self._remaining = self.content_length
            self._state = "length"
            if self._remaining == 0:
                self._finish()
        else:
            self._state = "close"


# --------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------


def _number(argument: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(argument, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(argument, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(argument, f"must be a finite number, got {value!r}")
    return number


_RESOLVE_RE = re.compile(r"([^:\[\]\s]+):(\d{1,5}):(\[[0-9A-Fa-f:.]+\]|[^\s\[\]]+)")


@dataclass
class ProbeConfig:
    """What to probe and how. Constructing it validates; errors raise ConfigError (a ValueError).

    ``hold``: seconds to hold the stream, from sending the request. ``keepalive_interval`` +
    ``tolerance``: the longest allowed gap without a keepalive. ``first_byte_timeout``: limit
    for connecting and for the first body byte. ``expect_first``: required first body line
    (None or "" disables that check). ``cacert``: CA bundle file for https. ``insecure``: skip
    certificate verification. ``headers``: extra request headers. ``resolve``: curl-style
    ``HOST:PORT:ADDR`` to connect to ADDR while keeping HOST for Host, SNI and verification.
    """

    url: str
    hold: float = 35.0
    keepalive_interval: float = 30.0
    tolerance: float = 2.0
    first_byte_timeout: float = 5.0
    expect_first: str | None = ":ok"
    cacert: str | None = None
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    resolve: str | None = None
    # Derived from url/resolve by __post_init__.
    scheme: str = field(init=False, default="")
    host: str = field(init=False, default="")
    port: int = field(init=False, default=0)
    target: str = field(init=False, default="/")
    host_header: str = field(init=False, default="")
    connect_host: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.hold = _number("hold", self.hold)
        self.keepalive_interval = _number("keepalive_interval", self.keepalive_interval)
        self.tolerance = _number("tolerance", self.tolerance)
        self.first_byte_timeout = _number("first_byte_timeout", self.first_byte_timeout)
        for name in ("hold", "keepalive_interval", "first_byte_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name):g}")
        if self.tolerance < 0:
            raise ConfigError("tolerance", f"must be >= 0, got {self.tolerance:g}")
        self._parse_url()
        self._parse_resolve()
        if self.expect_first is not None:
            if not isinstance(self.expect_first, str):
                raise ConfigError("expect_first", "must be a string")
            if "\r" in self.expect_first or "\n" in self.expect_first:
                raise ConfigError("expect_first", "must be a single line")
            if not self.expect_first:
                self.expect_first = None
        if self.cacert is not None:
            if not isinstance(self.cacert, str) or not self.cacert:
                raise ConfigError("cacert", "must be a file path")
            if not os.path.isfile(self.cacert):
                raise ConfigError("cacert", f"file not found: {self.cacert}")
        self.insecure = bool(self.insecure)
        self.headers = self._check_headers(self.headers)

    def _parse_url(self) -> None:
        url = self.url
        if not isinstance(url, str) or not url:
            raise ConfigError("url", "is required")
        if any(c in url for c in " \t\r\n"):
            raise ConfigError("url", f"must not contain whitespace: {url!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError("url", f"is malformed ({exc}): {url!r}") from None
        if parts.scheme not in ("http", "https"):
            raise ConfigError("url", f"must be an http:// or https:// URL, got {url!r}")
        if not parts.hostname:
            raise ConfigError("url", f"has no host: {url!r}")
        if "@" in parts.netloc:
            raise ConfigError("url", "must not contain credentials (send a header instead)")
        if port == 0:
            raise ConfigError("url", f"has an invalid port: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.host_header = parts.netloc
        self.connect_host = self.host

    def _parse_resolve(self) -> None:
        if self.resolve in (None, ""):
            self.resolve = None
            return
        m = _RESOLVE_RE.fullmatch(self.resolve) if isinstance(self.resolve, str) else None
        if m is None:
            raise ConfigError("resolve", f"must be HOST:PORT:ADDR, got {self.resolve!r}")
        host, port, addr = m.group(1), int(m.group(2)), m.group(3).strip("[]")
        if host.lower() != self.host or port != self.port:
            # curl silently ignores a non-matching entry; a probe should not.
            raise ConfigError(
                "resolve",
                f"{host}:{port} does not match the url's host and port {self.host}:{self.port}",
            )
        self.connect_host = addr

    @staticmethod
    def _check_headers(headers: Any) -> dict[str, str]:
        if headers is None:
            return {}
        if not isinstance(headers, dict):
            raise ConfigError("headers", "must be a mapping of name to value")
        clean: dict[str, str] = {}
        for name, value in headers.items():
            name = str(name).strip()
            value = "" if value is None else str(value).strip()
            if not _TOKEN_RE.fullmatch(name.encode("utf-8", "replace")):
                raise ConfigError("headers", f"has an invalid header name {name!r}")
            if "\r" in value or "\n" in value:
                raise ConfigError("headers", f"value of {name} must be a single line")
            clean[name] = value
        return clean

    @property
    def keepalive_limit(self) -> float:
        """The longest allowed gap without a keepalive."""
        return self.keepalive_interval + self.tolerance

    def request_bytes(self) -> bytes:
        """The GET request; user headers replace the defaults case-insensitively."""
        headers = {
            "Host": self.host_header,
            "User-Agent": USER_AGENT,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "close",
        }
        user = {k.lower(): (k, v) for k, v in self.headers.items()}
        lines = [f"GET {self.target} HTTP/1.1"]
        for name, value in headers.items():
            if name.lower() not in user:
                lines.append(f"{name}: {value}")
        lines.extend("{}: {}".format(*kv) for kv in user.values())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


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
# The blocking probe
# --------------------------------------------------------------------------------------------


def _ssl_context(cacert: str | None, insecure: bool) -> ssl.SSLContext:
    """The client TLS context of ``check`` and ``load`` (raises ssl.SSLError / OSError)."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        # Like curl --cacert: the given bundle replaces the system store.
        ctx = ssl.create_default_context(cafile=cacert)
    ctx.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only
    return ctx


Progress = Callable[[ProbeResult], None]
_Sock = Union[socket.socket, ssl.SSLSocket]


class _Probe:
    def __init__(self, config: ProbeConfig, progress: Progress | None) -> None:
        self.cfg = config
        self.progress = progress
        self.res = ProbeResult(url=config.url)
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
        self.http = HTTPResponseParser()
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
        cfg, res = self.cfg, self.res
        limit = self.start + cfg.first_byte_timeout
        where = f"{cfg.connect_host}:{cfg.port}"
        try:
            raw = socket.create_connection((cfg.connect_host, cfg.port), cfg.first_byte_timeout)
        except socket.gaierror as exc:
            res.fail("connect", f"cannot resolve {cfg.connect_host}: {exc.strerror or exc}")
            return None
        except socket.timeout:
            res.fail("connect", f"timed out connecting to {where}")
            return None
        except OSError as exc:
            res.fail("connect", f"cannot connect to {where}: {exc.strerror or exc}")
            return None
        peer = raw.getpeername()
        res.peer = f"{peer[0]}:{peer[1]}"
        self.passed.add("connect")
        if cfg.scheme != "https":
            return raw
        try:
            ctx = self._ssl_context()
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            res.fail("tls", f"cannot load cacert {cfg.cacert}: {exc}")
            return None
        raw.settimeout(max(limit - time.monotonic(), 0.001))
        try:
            sock = ctx.wrap_socket(raw, server_hostname=cfg.host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            res.fail("tls", "certificate verification failed: %s" % (exc.verify_message or exc))
            return None
        except socket.timeout:
            raw.close()
            res.fail("tls", "TLS handshake timed out")
            return None
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            res.fail("tls", f"TLS handshake failed: {exc}")
            return None
        res.tls_version = sock.version()
        self.passed.add("tls")
        return sock

    def _ssl_context(self) -> ssl.SSLContext:
        return _ssl_context(self.cfg.cacert, self.cfg.insecure)

    # -- request / response ----------------------------------------------------------------

    def _exchange(self, sock: _Sock) -> None:
        cfg, res = self.cfg, self.res
        try:
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            sock.sendall(cfg.request_bytes())
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
                self.end_at = time.monotonic()
                if self.http.head is None:
                    res.fail("status", f"connection error before the response was complete: {exc}")
                else:
                    self._closed(f"connection error: {exc}")
                return
            at = time.monotonic()
            if not data:
                self.end_at = at
                self.http.feed_eof()
                if self.http.error is not None:
                    res.fail(self.http.error.check, self.http.error.message)
                    return
                if self.http.truncated:
                    detail = "without the terminating chunk" if self.http.chunked else "mid-body"
                    self._closed(f"server closed the connection {detail}")
                else:
                    self._closed("server closed the connection")
                return
            body = self.http.feed(data)
            head = self.http.head
            if head is not None and "status" not in self.passed and not self._check_head(head):
                self.end_at = at
                return
            for piece in body:
                self._on_body(piece, at)
            self._late_keepalive(at)  # exact: every byte received up to `at` is counted
            error = self.http.error or self.sse.error
            if error is not None:
                self.end_at = at
                res.fail(error.check, error.message)
                return
            if self.http.done:
                self.end_at = at
                self._closed(f"response body ended ({self._framing()})")
                return

    def _framing(self) -> str:
        if self.http.chunked:
            return "terminating chunk"
        if self.http.content_length is not None:
            return f"Content-Length {self.http.content_length} reached"
        return "no body"

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
        if self.http.head_started:
            res.fail("status", f"response headers not complete within {waited:g} s")
        elif self.http.head is None:
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


def check(config: ProbeConfig, progress: Progress | None = None) -> ProbeResult:
    """Probe ``config.url`` once and judge it; never raises for network or server faults.

    ``progress`` (optional) is called with the live ProbeResult at least every 0.25 s.
    """
    return _Probe(config, progress).run()


# --------------------------------------------------------------------------------------------
# Load mode: many concurrent streams on one asyncio loop, through the same parsers
# --------------------------------------------------------------------------------------------

LOAD_FD_RESERVE = 32  # descriptors beyond one per stream: stdio, the loop, the publisher
MAX_LOAD_STREAMS = 100_000
DEFAULT_RECONNECT_DELAY = 3.0  # seconds, when the server sent no ``retry:`` (as browsers do)
ID_RESET_GAP = 1_000_000  # a larger jump between ids is a new id space, not lost events
ABORT_AFTER = 20  # this many failed first connects in a row, none opened: stop the run
PUBLISH_TIMEOUT = 10.0
MAX_PUBLISH_IN_FLIGHT = 16
CLEANUP_TIMEOUT = 3.0  # closing every connection at the end of the run
TLS_READ_BUFFER = 16 * 1024 + 256  # one TLS record of plaintext
MAX_DROP_TIMES = 100_000  # drop times listed in the report (seconds from the start)


def _loopback(argument: str, host: str) -> None:
    """Refuse a load target that is not a loopback address: load is for the host itself."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(argument, f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = {info[4][0].split("%", 1)[0] for info in infos}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ConfigError(
            argument,
            f"load only targets loopback addresses; {host} is {', '.join(sorted(addresses))}"
            " (run it on the host that serves the stream, with --resolve HOST:PORT:127.0.0.1)",
        )


@dataclass
class LoadConfig:
    """A load run: ``streams`` concurrent streams to ``url``. Constructing it validates.

    Streams start evenly over ``ramp`` seconds and are then all held for ``hold`` seconds,
    so a run lasts ``ramp + hold`` (plus at most CLEANUP_TIMEOUT to close). A stream that
    drops is reopened after ``reconnect_delay`` (None: the server's ``retry:`` hint, else
    DEFAULT_RECONNECT_DELAY) with ``Last-Event-ID``. With ``publish_url`` the run also
    publishes one event every ``publish_interval`` seconds (POST ``{"data": ...}`` with
    ``Authorization: Bearer publish_token``) and counts lost events exactly (see ``load``).
    ``url``, ``cacert``, ``insecure``, ``headers``, ``resolve`` and ``first_byte_timeout``
    mean what they mean for ``check``; targets must be loopback addresses.
    """

    url: str
    streams: int = 100
    hold: float = 60.0
    ramp: float = 0.0
    keepalive_interval: float = 30.0
    first_byte_timeout: float = 5.0
    reconnect_delay: float | None = None
    cacert: str | None = None
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    resolve: str | None = None
    publish_url: str | None = None
    publish_token: str | None = None
    publish_interval: float = 1.0
    probe: ProbeConfig = field(init=False, repr=False)
    publish: ProbeConfig | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        streams = self.streams
        if isinstance(streams, bool) or not isinstance(streams, int):
            try:
                streams = int(str(streams), 10)
            except ValueError:
                raise ConfigError("streams", f"must be a whole number, got {streams!r}") from None
        if not 1 <= streams <= MAX_LOAD_STREAMS:
            raise ConfigError("streams", f"must be 1 to {MAX_LOAD_STREAMS}, got {streams}")
        self.streams = streams
        self.ramp = _number("ramp", self.ramp)
        if self.ramp < 0:
            raise ConfigError("ramp", f"must be >= 0, got {self.ramp:g}")
        if self.reconnect_delay is not None:
            self.reconnect_delay = _number("reconnect_delay", self.reconnect_delay)
            if self.reconnect_delay < 0:
                raise ConfigError("reconnect_delay", f"must be >= 0, got {self.reconnect_delay:g}")
        self.publish_interval = _number("publish_interval", self.publish_interval)
        if self.publish_interval <= 0:
            raise ConfigError("publish_interval", f"must be > 0, got {self.publish_interval:g}")
        # The stream request, validated exactly as for `check` (same argument names).
        self.probe = ProbeConfig(
            url=self.url,
            hold=self.hold,
            keepalive_interval=self.keepalive_interval,
            first_byte_timeout=self.first_byte_timeout,
            expect_first=None,
            cacert=self.cacert,
            insecure=self.insecure,
            headers=self.headers,
            resolve=self.resolve,
        )
        self.hold = self.probe.hold
        self.keepalive_interval = self.probe.keepalive_interval
        self.first_byte_timeout = self.probe.first_byte_timeout
        self.headers = self.probe.headers
        _loopback("url", self.probe.connect_host)
        self.publish = None
        if self.publish_url not in (None, ""):
            try:
                publish = ProbeConfig(
                    url=self.publish_url, cacert=self.cacert, insecure=self.insecure
                )
                if self.probe.resolve and (publish.host, publish.port) == (
                    self.probe.host,
                    self.probe.port,
                ):
                    publish.connect_host = self.probe.connect_host  # --resolve applies too
            except ConfigError as exc:
                raise ConfigError("publish_url", exc.message) from None
            _loopback("publish_url", publish.connect_host)
            token = "" if self.publish_token is None else str(self.publish_token).strip()
            if any(c in token for c in "\r\n"):
                raise ConfigError("publish_token", "must be a single line")
            self.publish_token = token
            self.publish = publish
        elif self.publish_token:
            raise ConfigError("publish_token", "needs publish_url")


def nofile_budget(streams: int, reserve: int = LOAD_FD_RESERVE) -> dict[str, int | None]:
    """Raise the soft open-files limit to the hard one; ConfigError if ``streams`` cannot fit.

    Each stream holds one descriptor in this process and one local port towards the target,
    so the check covers RLIMIT_NOFILE and, where readable, the ephemeral port range.
    """
    needed = streams + reserve
    try:
        import resource
    except ImportError:  # not a Unix: nothing to check
        return {"soft": None, "hard": None, "needed": needed}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        target = hard
        if hard == resource.RLIM_INFINITY:
            try:
                with open("/proc/sys/fs/nr_open") as fh:
                    target = int(fh.read())
            except (OSError, ValueError):
                target = 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def show(value: int) -> str:
        return "unlimited" if value == resource.RLIM_INFINITY else str(value)

    if soft != resource.RLIM_INFINITY and needed > soft:
        raise ConfigError(
            "streams",
            f"{streams} streams need about {needed} open files, but RLIMIT_NOFILE allows"
            f" {show(soft)} (hard limit {show(hard)}); lower the number of streams or raise"
            " the hard limit (ulimit -Hn, systemd LimitNOFILE=, podman --ulimit nofile=)",
        )
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(v) for v in fh.read().split())
    except (OSError, ValueError):
        low = high = 0
    if high > low and streams > high - low + 1:
        raise ConfigError(
            "streams",
            f"{streams} streams need {streams} local ports, but net.ipv4.ip_local_port_range"
            f" has {high - low + 1} ({low}-{high})",
        )
    return {
        "soft": None if soft == resource.RLIM_INFINITY else soft,
        "hard": None if hard == resource.RLIM_INFINITY else hard,
        "needed": needed,
    }


def percentiles(values: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    """``{"n", "p50", ..., "max"}`` of ``values`` (linear interpolation), None when empty."""
    out: dict[str, Any] = {"n": len(values)}
    ordered = sorted(values)
    for p in points:
        out[f"p{p}"] = None if not ordered else round(_quantile(ordered, p), 2)
    out["max"] = None if not ordered else round(ordered[-1], 2)
    return out


def _quantile(ordered: list[float], p: float) -> float:
    k = (len(ordered) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class _Stream:
    """What one simulated client knows about its stream across reconnects."""

    __slots__ = (
        "dropped_at",
        "drops",
        "events",
        "first_open_at",
        "index",
        "last_id",
        "last_int",
        "open",
        "open_at_end",
        "opened",
        "prev_at",
        "received",
        "resumes",
        "retry_ms",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.opened = False  # got 200 + a body byte at least once
        self.open = False
        self.open_at_end = False
        self.first_open_at = 0.0
        self.prev_at = 0.0  # last time body bytes arrived (keepalive gaps are against this)
        self.dropped_at = 0.0
        self.drops = 0
        self.resumes = 0
        self.events = 0
        self.last_id = ""  # Last-Event-ID to resume with
        self.last_int: int | None = None
        self.received: set[int] = set()
        self.retry_ms: int | None = None


@dataclass
class LoadResult:
    """Outcome of a load run; ``to_dict()`` is the JSON shape (see ``load``)."""

    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])

    def to_dict(self) -> dict[str, Any]:
        return self.summary


LoadProgress = Callable[[dict[str, Any]], None]


class _Load:
    def __init__(self, cfg: LoadConfig, budget: dict[str, Any], progress: LoadProgress | None):
        self.cfg = cfg
        self.budget = budget
        self.progress = progress
        self.streams = [_Stream(i) for i in range(cfg.streams)]
        self.ssl_ctx = (
            _ssl_context(cfg.cacert, cfg.insecure) if cfg.probe.scheme == "https" else None
        )
        self.pub_ssl = (
            _ssl_context(cfg.cacert, cfg.insecure)
            if cfg.publish is not None and cfg.publish.scheme == "https"
            else None
        )
        self.request = cfg.probe.request_bytes()
        self.open = 0
        self.drops = 0
        self.reconnects = 0
        self.events = 0
        self.keepalives = 0
        self.attempt_failures: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.drop_reasons: dict[str, int] = {}
        self.first_errors: dict[str, str] = {}  # one example message per failure kind
        self.first_byte_ms: list[float] = []
        self.connect_ms: list[float] = []
        self.ok_ms: list[float] = []
        self.time_back_ms: list[float] = []
        self.lateness_ms: list[float] = []
        self.bunched = 0
        self.retry_hint: int | None = None
        self.drop_times: list[float] = []
        self.gap_lost = 0
        self.id_resets = 0
        self.duplicates = 0
        self.non_integer_ids = 0
        self.series: list[dict[str, Any]] = []
        self.publishes: list[tuple[int, float, float]] = []  # (id, sent, acknowledged)
        self.publish_counts: dict[str, int] = {}
        self.publish_in_flight = 0
        self.connect_failures_in_a_row = 0
        self.any_connected = False
        self.ending = False
        self.aborted: str | None = None
        self.tasks_left = cfg.streams

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None) -> LoadResult:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.loop = loop
        self.t_start = loop.time()
        self.ramp_end = self.t_start + cfg.ramp
        self.end_at = self.ramp_end + cfg.hold
        self.wake = asyncio.Event()
        tasks = [loop.create_task(self._stream(s)) for s in self.streams]
        helpers = [loop.create_task(self._sample())]
        if cfg.publish is not None:
            helpers.append(loop.create_task(self._publisher()))
        waiters = [
            loop.create_task(asyncio.sleep(self.end_at - loop.time())),
            loop.create_task(self.wake.wait()),
        ]
        if stop is not None:
            waiters.append(loop.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.ending = True
            self.finished_at = loop.time()
            for s in self.streams:
                s.open_at_end = s.open
                if s.open:
                    # A keepalive that is overdue at the end counts as late as it is now.
                    gap = self.finished_at - s.prev_at - cfg.keepalive_interval
                    if gap > 0:
                        self.lateness_ms.append(gap * 1000.0)
            self._record_sample(final=True)
            everything = tasks + helpers + waiters
            for task in everything:
                task.cancel()
            await asyncio.wait(everything, timeout=CLEANUP_TIMEOUT)
        return LoadResult(self._summary(stop is not None and stop.is_set()))

    async def _sample(self) -> None:
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, self.t_start + n - self.loop.time()))
            self._record_sample()

    def _record_sample(self, final: bool = False) -> None:
        t = round(self.loop.time() - self.t_start, 2 if final else 1)
        sample = {
            "t": t,
            "open": self.open,
            "dropped": self.drops,
            "reconnected": self.reconnects,
            "events": self.events,
            "failed": sum(self.attempt_failures.values()),
        }
        self.series.append(sample)
        if self.progress is not None and not final:
            self.progress(dict(sample, streams=self.cfg.streams, end=self.end_at - self.t_start))

    # -- one client ------------------------------------------------------------------------

    async def _stream(self, s: _Stream) -> None:
        cfg, loop = self.cfg, self.loop
        try:
            delay = self.t_start + cfg.ramp * s.index / cfg.streams - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            resume = False
            while not self.ending:
                await self._attempt(s, resume)
                if self.ending or not s.opened:
                    return  # a stream that never opened is not retried
                # Dropped, or a reconnect failed: wait like an EventSource, then resume.
                if cfg.reconnect_delay is not None:
                    delay = cfg.reconnect_delay
                elif s.retry_ms is not None:
                    delay = s.retry_ms / 1000.0
                else:
                    delay = DEFAULT_RECONNECT_DELAY
                if loop.time() + delay >= self.end_at:
                    return
                await asyncio.sleep(delay)
                resume = True
        finally:
            self.tasks_left -= 1
            if self.tasks_left == 0:
                self.wake.set()

    def _request_for(self, s: _Stream, resume: bool) -> bytes:
        if not (resume and s.last_id):
            return self.request
        probe = copy.copy(self.cfg.probe)
        headers = {k: v for k, v in probe.headers.items() if k.lower() != "last-event-id"}
        headers["Last-Event-ID"] = s.last_id
        probe.headers = headers
        return probe.request_bytes()

    async def _attempt(self, s: _Stream, resume: bool) -> None:
        """One connection: connect, request, then read until it ends (or the run does)."""
        cfg, loop, probe = self.cfg, self.loop, self.cfg.probe
        t0 = loop.time()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    probe.connect_host,
                    probe.port,
                    ssl=self.ssl_ctx,
                    server_hostname=probe.host if self.ssl_ctx is not None else None,
                    limit=RECV_SIZE,
                ),
                cfg.first_byte_timeout,
            )
        except asyncio.TimeoutError:
            self._connect_failed(s, "connect", "timed out connecting (or in the TLS handshake)")
            return
        except ssl.SSLError as exc:
            self._connect_failed(s, "tls", f"TLS handshake failed: {exc}")
            return
        except OSError as exc:
            # asyncio words every refusal "Connect call failed"; the errno says why
            why = os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)
            self._connect_failed(s, "connect", f"{why} ({probe.connect_host}:{probe.port})")
            return
        self.connect_failures_in_a_row = 0
        self.any_connected = True
        t_conn = loop.time()
        http = HTTPResponseParser()
        sse = SSEParser()
        first = False
        try:
            writer.write(self._request_for(s, resume))
            t_req = loop.time()
            deadline = t_req + cfg.first_byte_timeout
            head_checked = False
            while True:
                if first:
                    data = await reader.read(RECV_SIZE)
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise asyncio.TimeoutError
                    data = await asyncio.wait_for(reader.read(RECV_SIZE), remaining)
                at = loop.time()
                if not data:
                    http.feed_eof()
                    if not first:
                        error = http.error
                        self._failed(
                            s,
                            "status" if error else "first_byte",
                            error.message if error else "stream ended before any body byte",
                        )
                    else:
                        self._dropped(s, "closed" if http.truncated else "ended", at)
                    return
                body = http.feed(data)
                head = http.head
                if head is not None and not head_checked:
                    head_checked = True
                    if head.status != 200:
                        key = str(head.status)
                        self.statuses[key] = self.statuses.get(key, 0) + 1
                        self._failed(s, "status", f"HTTP {head.status} {head.reason}".strip())
                        return
                    mime = head.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                    if mime != "text/event-stream":
                        self._failed(s, "content_type", f"Content-Type {mime or 'missing'}")
                        return
                for piece in body:
                    if not piece:
                        continue
                    if not first:
                        first = True
                        self._opened(s, resume, t0, t_conn, t_req, at)
                    for item in sse.feed(piece, at):
                        self._item(s, item)
                    if sse.id_seen:
                        s.last_id = sse.last_event_id
                    if sse.retry_ms is not None:
                        s.retry_ms = self.retry_hint = sse.retry_ms
                if first:
                    s.prev_at = at
                error = http.error or sse.error
                if error is not None:
                    if first:
                        self._dropped(s, "protocol", at)
                    else:
                        self._failed(s, error.check, error.message)
                    return
                if http.done:
                    if first:
                        self._dropped(s, "ended", at)
                    else:
                        self._failed(s, "first_byte", "response ended before any body byte")
                    return
        except asyncio.TimeoutError:
            if http.head_started:
                self._failed(s, "status", "response head not complete in time")
            else:
                what = "body byte" if http.head is not None else "response"
                self._failed(s, "first_byte", f"no {what} within {cfg.first_byte_timeout:g} s")
        except (OSError, ssl.SSLError) as exc:
            if first:
                self._dropped(s, "reset", loop.time())
            else:
                self._failed(s, "status", f"connection error before the first body byte: {exc}")
        finally:
            writer.transport.abort()

    def _opened(
        self, s: _Stream, resume: bool, t0: float, t_conn: float, t_req: float, at: float
    ) -> None:
        if not s.opened:
            s.opened = True
            s.first_open_at = at
            self.first_byte_ms.append((at - t_req) * 1000.0)
            self.connect_ms.append((t_conn - t0) * 1000.0)
            self.ok_ms.append((at - t0) * 1000.0)
        else:
            s.resumes += 1
            self.reconnects += 1
            self.time_back_ms.append((at - s.dropped_at) * 1000.0)
        s.open = True
        s.prev_at = at
        self.open += 1

    def _item(self, s: _Stream, item: Comment | Event) -> None:
        if isinstance(item, Comment):
            if item.text.strip() == KEEPALIVE_TEXT:
                self.keepalives += 1
                gap = item.at - s.prev_at
                if gap < self.cfg.keepalive_interval / 2.0:
                    # Arrived together with earlier bytes: something in between held them
                    # back (a buffering proxy); their lateness cannot be told from here.
                    self.bunched += 1
                else:
                    self.lateness_ms.append((gap - self.cfg.keepalive_interval) * 1000.0)
            return
        s.events += 1
        self.events += 1
        try:
            n = int(item.id)
        except ValueError:
            self.non_integer_ids += 1
            return
        last = s.last_int
        if last is not None:
            gap = n - last - 1
            if gap < 0:
                self.duplicates += 1
            elif 0 < gap <= ID_RESET_GAP:
                self.gap_lost += gap
            elif gap > ID_RESET_GAP:
                self.id_resets += 1
        if last is None or n > last:
            s.last_int = n
        if self.cfg.publish is not None:
            s.received.add(n)

    def _dropped(self, s: _Stream, reason: str, at: float) -> None:
        if self.ending:
            return
        s.open = False
        s.drops += 1
        s.dropped_at = at
        self.drop_times.append(round(at - self.t_start, 2))
        self.open -= 1
        self.drops += 1
        self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + 1

    def _failed(self, s: _Stream, kind: str, message: str) -> None:
        if self.ending:
            return
        self.attempt_failures[kind] = self.attempt_failures.get(kind, 0) + 1
        self.first_errors.setdefault(kind, message)

    def _connect_failed(self, s: _Stream, kind: str, message: str) -> None:
        if self.ending:
            return
        self._failed(s, kind, message)
        if s.opened:
            return
        self.connect_failures_in_a_row += 1
        limit = min(ABORT_AFTER, self.cfg.streams)
        if not self.any_connected and self.connect_failures_in_a_row >= limit:
            self.aborted = (
                f"the first {limit} connection(s) failed and none connected ({kind}: {message});"
                " is the target up?"
            )
            self.wake.set()

    # -- the publisher -----------------------------------------------------------------------

    async def _publisher(self) -> None:
        cfg, loop = self.cfg, self.loop
        # From when the streams are open until shortly before the end, so that every event
        # acknowledged in time has had the chance to reach every stream.
        start = self.ramp_end + min(1.0, cfg.hold / 10.0)
        stop = self.end_at - self._publish_tail()
        seq = 0
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                at = start + seq * cfg.publish_interval
                if at >= stop:
                    break
                await asyncio.sleep(max(0.0, at - loop.time()))
                seq += 1
                if self.publish_in_flight >= MAX_PUBLISH_IN_FLIGHT:
                    self._count_publish("skipped")
                    continue
                task = loop.create_task(self._publish_one(seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, self.end_at - loop.time()))
        finally:
            for task in list(tasks):
                task.cancel()

    def _publish_tail(self) -> float:
        """No publishing in the last seconds of the hold: events still on their way at the
        end (acknowledged within half of this before it) are not judged."""
        return min(2.0, self.cfg.hold / 4.0)

    def _count_publish(self, key: str) -> None:
        self.publish_counts[key] = self.publish_counts.get(key, 0) + 1

    async def _publish_one(self, seq: int) -> None:
        pub, loop = self.cfg.publish, self.loop
        assert pub is not None
        self.publish_in_flight += 1
        sent = loop.time()
        writer = None
        try:
            body = json.dumps({"event": "sseprobe", "data": {"seq": seq}}).encode()
            lines = [
                f"POST {pub.target} HTTP/1.1",
                f"Host: {pub.host_header}",
                f"User-Agent: {USER_AGENT}",
                "Content-Type: application/json",
                f"Content-Length: {len(body)}",
                "Connection: close",
            ]
            if self.cfg.publish_token:
                lines.append(f"Authorization: Bearer {self.cfg.publish_token}")
            request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
            deadline = sent + PUBLISH_TIMEOUT
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    pub.connect_host,
                    pub.port,
                    ssl=self.pub_ssl,
                    server_hostname=pub.host if self.pub_ssl is not None else None,
                ),
                PUBLISH_TIMEOUT,
            )
            writer.write(request)
            http = HTTPResponseParser()
            chunks: list[bytes] = []
            while not http.done and http.error is None:
                data = await asyncio.wait_for(reader.read(RECV_SIZE), deadline - loop.time())
                if not data:
                    http.feed_eof()
                    break
                chunks.extend(http.feed(data))
            head = http.head
            if head is None or http.error is not None:
                self._count_publish("error")
                return
            self._count_publish(str(head.status))
            if 200 <= head.status < 300:
                try:
                    event_id = int(json.loads(b"".join(chunks))["id"])
                except (ValueError, KeyError, TypeError):
                    self._count_publish("no_id")
                    return
                self.publishes.append((event_id, sent, loop.time()))
        except asyncio.TimeoutError:
            self._count_publish("timeout")
        except (OSError, ssl.SSLError):
            self._count_publish("error")
        finally:
            self.publish_in_flight -= 1
            if writer is not None:
                writer.transport.abort()

    # -- the report --------------------------------------------------------------------------

    def _lost_exactly(self) -> int:
        """Events published (and acknowledged in time) while a stream was subscribed, unseen."""
        grace = self._publish_tail() / 2.0  # an event acknowledged just now may be on its way
        lost = 0
        for s in self.streams:
            if not s.opened:
                continue
            until = (self.finished_at if s.open_at_end else s.dropped_at) - grace
            for event_id, sent, acked in self.publishes:
                if sent >= s.first_open_at and acked <= until and event_id not in s.received:
                    lost += 1
        return lost

    def _summary(self, stopped: bool) -> dict[str, Any]:
        cfg = self.cfg
        streams = self.streams
        opened = sum(1 for s in streams if s.opened)
        held = sum(1 for s in streams if s.open_at_end and s.drops == 0)
        resumed = sum(1 for s in streams if s.open_at_end and s.drops > 0)
        dropped = sum(1 for s in streams if s.drops > 0)
        non_200 = sum(self.statuses.values())
        if cfg.publish is not None:
            method, lost = "published-ids", self._lost_exactly()
        else:
            method, lost = "id-gaps", self.gap_lost
        ordered = sorted(self.first_byte_ms)
        ok_ordered = sorted(self.ok_ms)
        published = None
        if cfg.publish is not None:
            published = {
                "url": cfg.publish.url,
                "interval_s": cfg.publish_interval,
                "acknowledged": len(self.publishes),
                "answers": dict(sorted(self.publish_counts.items())),
            }
        ok = (
            self.aborted is None
            and opened == cfg.streams
            and held + resumed == cfg.streams
            and lost == 0
            and non_200 == 0
            and not self.attempt_failures
        )
        return {
            "ok": ok,
            "url": cfg.url,
            "streams": cfg.streams,
            "ramp_s": cfg.ramp,
            "hold_s": cfg.hold,
            "elapsed_s": round(self.finished_at - self.t_start, 3),
            "t0_monotonic": round(self.t_start, 3),  # the series' t=0 on CLOCK_MONOTONIC
            "stopped_early": stopped and self.finished_at < self.end_at,
            "aborted": self.aborted,
            "opened": opened,
            "held": held,
            "resumed": resumed,
            "open_at_end": held + resumed,
            "dropped": dropped,
            "drops": self.drops,
            "reconnects": self.reconnects,
            "never_opened": cfg.streams - opened,
            "drop_reasons": dict(sorted(self.drop_reasons.items())),
            "attempt_failures": dict(sorted(self.attempt_failures.items())),
            "failure_examples": dict(sorted(self.first_errors.items())),
            "non_200": non_200,
            "statuses": dict(sorted(self.statuses.items())),
            "first_byte_ms": percentiles(self.first_byte_ms),
            "connect_ms": percentiles(self.connect_ms),
            "ok_ms": percentiles(self.ok_ms),
            "first_byte_cdf_ms": [round(_quantile(ordered, p), 2) for p in range(101)]
            if ordered
            else [],
            "ok_cdf_ms": [round(_quantile(ok_ordered, p), 2) for p in range(101)]
            if ok_ordered
            else [],
            "time_back_ms": percentiles(self.time_back_ms),
            "retry_ms": self.retry_hint,
            "keepalive_interval_s": cfg.keepalive_interval,
            "keepalives": self.keepalives,
            "keepalive_lateness_ms": percentiles(self.lateness_ms, (50, 99)),
            "keepalives_bunched": self.bunched,
            "events": self.events,
            "events_lost": lost,
            "loss_method": method,
            "gap_lost": self.gap_lost,
            "id_resets": self.id_resets,
            "duplicates": self.duplicates,
            "non_integer_ids": self.non_integer_ids,
            "published": published,
            "nofile": self.budget,
            "series": self.series,
            "drops_at_s": self.drop_times[:MAX_DROP_TIMES],
        }


def load(
    config: LoadConfig,
    progress: LoadProgress | None = None,
    handle_signals: bool = False,
) -> LoadResult:
    """Open ``config.streams`` streams, hold them, and measure; never raises for server faults.

    Raises ConfigError before anything is opened when the streams cannot fit this process's
    open-files limit (raised to the hard limit first) or the cacert cannot be loaded.
    ``progress`` is called once a second with the latest time-series sample.
    ``handle_signals``: SIGINT/SIGTERM end the hold early and still report.

    What is counted (per simulated client, across its reconnects):

    * opened: got HTTP 200 text/event-stream and a first body byte at least once. A client
      whose first connection fails is not retried (counted in ``never_opened`` and in
      ``attempt_failures``); if the first ABORT_AFTER connects all fail (not one TCP/TLS
      connection made) the run stops.
    * held: open at the end of the hold and never dropped; resumed: open at the end after
      at least one drop; dropped: clients with at least one drop (``drops`` counts them all).
    * A dropped client waits ``reconnect_delay`` (default: the server's ``retry:``) and
      reconnects with ``Last-Event-ID`` until it is back or the run ends; unlike EventSource
      it also retries after a non-200 answer so that the time back stays measurable
      (``non_200`` and ``statuses`` count those answers). time_back: drop to first byte.
    * first_byte_ms: request sent to first body byte, first connections only (as ``check``);
      connect_ms: TCP (+TLS) connect; ok_ms: connect start to first body byte.
    * keepalive lateness: for every ``:keepalive``, the time since the previous body bytes
      of that stream minus ``keepalive_interval`` (the server sends one after that much
      idle time); a stream whose keepalive is overdue at the end adds its overdue time.
      A keepalive that arrives less than half an interval after the previous bytes was
      held back together with them (a buffering proxy) and is counted in
      ``keepalives_bunched`` instead. ``drops_at_s``: when each drop happened.
    * events lost. Method "id-gaps" (no publisher): ids are integers that grow by one per
      publish, so per client every jump from the previous id to the next one, within a
      connection or across a resume (the resume asks for everything after the last id),
      counts ``jump - 1`` lost events. A jump over ID_RESET_GAP is a new id space (e.g. the
      reference app numbers from its boot time, so a restart jumps) and is counted in
      ``id_resets`` instead; ids going backwards count as ``duplicates``. Gaps before a
      client's first event cannot be seen this way. Method "published-ids" (with
      ``publish_url``): the run publishes events itself and knows their ids; a client loses
      an event published after its first byte and acknowledged at least 1 s (hold/8 when
      shorter) before the end, or before its last drop if it did not come back, that it
      never received. Publishing stops 2 s (hold/4) before the end. This also
      sees losses across restarts and before the first event. ``gap_lost`` is always given.
    """
    budget = nofile_budget(config.streams)
    try:
        _ssl_context(config.cacert, config.insecure)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("cacert", f"cannot be loaded: {exc}") from None
    return asyncio.run(_run_load(config, budget, progress, handle_signals))


async def _run_load(
    config: LoadConfig,
    budget: dict[str, Any],
    progress: LoadProgress | None,
    handle_signals: bool,
) -> LoadResult:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    hooked: list[int] = []
    # asyncio's TLS layer (CPython 3.11+) gives every connection a 256 KiB read buffer up
    # front: 2.5 GiB for 10,000 streams, more than the servers being measured. One TLS
    # record (16 KiB) is all a read needs, so this run lowers it and puts it back after.
    tls_protocol = getattr(getattr(asyncio, "sslproto", None), "SSLProtocol", None)
    tls_buffer = getattr(tls_protocol, "max_size", None)
    if isinstance(tls_buffer, int) and tls_buffer > TLS_READ_BUFFER:
        tls_protocol.max_size = TLS_READ_BUFFER  # type: ignore[union-attr]
    if handle_signals:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                hooked.append(sig)
    try:
        return await _Load(config, budget, progress).run(stop)
    finally:
        for sig in hooked:
            loop.remove_signal_handler(sig)
        if isinstance(tls_buffer, int) and tls_buffer > TLS_READ_BUFFER:
            tls_protocol.max_size = tls_buffer  # type: ignore[union-attr]
