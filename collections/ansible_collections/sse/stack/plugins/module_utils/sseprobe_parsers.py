"""The probe's sans-IO parsers: feed bytes, get items back (no sockets, no clocks of their own).

``SSEParser`` (the event stream) and ``HTTPResponseParser`` (HTTP/1.x head and body framing)
are shared by the blocking ``check`` (sseprobe.py) and the asyncio ``load``
(sseprobe_load.py), so both judge exactly the same bytes the same way. Neither raises on bad
input: a malformed response sets ``error`` (a ProtocolError naming the failing check).

Standard library only and Python 3.9+: shipped to targets with the sse.stack module_utils
``sseprobe``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

MAX_HEADER_LINE = 64 * 1024  # a longer response header line is treated as a broken server
MAX_HEAD = 256 * 1024  # total response head; bounds "headers that never end"
MAX_CHUNK_LINE = 4 * 1024  # chunk size line incl. extensions
MAX_SSE_LINE = 1024 * 1024  # bounds memory when a server never sends a line ending
KEEPALIVE_TEXT = "keepalive"


class ProtocolError(Exception):
    """A malformed response; ``check`` names the failing check (``status`` or ``protocol``)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
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
TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
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
            return self._step_chunk_size()
        if state == "chunk_data":
            return self._step_counted(out, "chunk_end")
        if state == "chunk_end":
            return self._step_chunk_end()
        if state == "trailer":
            line = self._take_line("protocol", "chunk trailer line", self._max_header_line)
            if line is None:
                return False
            if line == b"":
                self._finish()
            return True
        if state == "length":
            return self._step_counted(out, "done")
        if state == "close" and self._buf:
            out.append(bytes(self._buf))
            self._buf.clear()
        return False

    def _step_chunk_size(self) -> bool:
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

    def _step_counted(self, out: list[bytes], then: str) -> bool:
        """Body bytes of a known length (a chunk's data or a Content-Length body)."""
        if not self._buf:
            return False
        piece = bytes(self._buf[: self._remaining])
        del self._buf[: len(piece)]
        self._remaining -= len(piece)
        out.append(piece)
        if self._remaining == 0:
            if then == "done":
                self._finish()
            else:
                self._state = then
        return True

    def _step_chunk_end(self) -> bool:
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
        if not sep or not TOKEN_RE.fullmatch(name):
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
