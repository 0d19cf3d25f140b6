"""Server-Sent Events probe: the one implementation behind `bin/sseprobe` and the sse_probe module.

Standard library only and Python 3.9+, because Ansible ships this file to bare targets as
``ansible.module_utils.sseprobe`` (so: no relative imports, no other project imports).

Layers:

* ``SSEParser`` and ``HTTPResponseParser`` are sans-IO (feed bytes, get items back) so that a
  later asyncio ``load`` mode can reuse exactly this parsing code.
* ``check()`` is a thin blocking socket loop on top of them with one overall deadline of
  ``hold + first_byte_timeout``; a healthy run ends ``hold`` seconds after the request was sent.

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
``keepalive``      a gap without a ``:keepalive`` comment (from the first body byte, i.e. the
                   ``:ok`` of a healthy stream, to the first keepalive, between keepalives, or
                   from the last one to the end of the hold) longer than interval + tolerance.
                   A hold shorter than that limit therefore never requires a keepalive.
``stream_closed``  the stream ended before the hold: EOF, reset, the terminating chunk, or the
                   end of a Content-Length body.
``protocol``       broken body framing: an invalid chunk size line, chunk data not followed by
                   CRLF, or an SSE line over 1 MiB.

After a ``status`` or ``content_type`` failure the body is not read (it is not an event stream),
so the body checks report "skip".
"""

from __future__ import annotations

import contextlib
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
        cfg = self.cfg
        if cfg.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            # Like curl --cacert: the given bundle replaces the system store.
            ctx = ssl.create_default_context(cafile=cfg.cacert)
        ctx.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only
        return ctx

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
        if self.res.keepalives == 0:
            return f"no :keepalive comment for {gap:.2f} s after the first body byte ({limit})"
        return f"{gap:.2f} s without a :keepalive comment ({limit})"

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
