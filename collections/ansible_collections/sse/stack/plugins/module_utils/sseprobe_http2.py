"""HTTP/2 for ``sseprobe check --http2``: the transport browsers use for ``/notify/events``.

``HTTP2Exchange`` is an ``Exchange`` (sseprobe.py) over the sans-IO ``h2`` library (hyper's
HTTP/2 state machine): TLS with ALPN ``h2`` only, one GET on stream 1, the DATA frames of
that stream handed to the probe as body bytes. Everything else (event parsing, the ``:ok``,
keepalive and hold judgements, the failure names and the JSON fields) is ``sseprobe.check``
itself: only the transport differs.

Controller only: the CLI imports this file when asked for ``--http2``; the ``sse_probe`` and
``sse_diagnose`` modules never import it, so targets get neither it nor h2
(tests/unit/test_sseprobe.py follows their imports as Ansible does).
"""

from __future__ import annotations

from http import HTTPStatus

from ansible_collections.sse.stack.plugins.module_utils.sseprobe_config import ProbeConfig
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_parsers import (
    ProtocolError,
    ResponseHead,
)
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error

# Connection-specific HTTP/1.1 headers are forbidden in HTTP/2 (RFC 9113 8.2.2); Host
# becomes :authority.
_DROP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}


def _code(value: int) -> str:
    try:
        return ErrorCodes(value).name
    except ValueError:
        return f"0x{value:x}"


class HTTP2Exchange:
    """One GET over HTTP/2 (the ``h2`` library), read as the probe's Exchange."""

    alpn = ("h2",)
    protocol = "HTTP/2"
    head_started = False  # h2 hands over a header block whole

    def __init__(self, config: ProbeConfig) -> None:
        self.cfg = config
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.stream_id = 0
        self.head: ResponseHead | None = None
        self.error: ProtocolError | None = None
        self.ended: str | None = None

    def alpn_problem(self, selected: str | None) -> str | None:
        if selected == "h2":
            return None
        chose = f"selected {selected!r}" if selected else "selected no protocol"
        return (
            f"the server does not speak HTTP/2 here: ALPN {chose}, not 'h2'"
            " (nginx: `http2 on;` in the server block)"
        )

    def start(self) -> bytes:
        cfg = self.cfg
        self.conn.initiate_connection()
        self.stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "GET"),
            (":scheme", cfg.scheme),
            (":authority", cfg.host_header),
            (":path", cfg.target),
        ]
        for name, value in cfg.request_headers():
            if name.lower() == "host":
                headers[2] = (":authority", value)  # a user's Host header, as HTTP/1.1 sends it
            elif name.lower() not in _DROP:
                headers.append((name.lower(), value))
        self.conn.send_headers(self.stream_id, headers, end_stream=True)
        return self.conn.data_to_send()

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None or self.ended is not None:
            return []
        try:
            events = self.conn.receive_data(data)
        except H2Error as exc:
            check = "protocol" if self.head is not None else "status"
            self.error = ProtocolError(check, f"HTTP/2 protocol error: {exc}")
            return []
        body: list[bytes] = []
        for event in events:
            if getattr(event, "stream_id", self.stream_id) != self.stream_id:
                continue  # a stream we never opened (a server push the settings refuse)
            if isinstance(event, ResponseReceived):
                self.head = self._head(event.headers)
            elif isinstance(event, DataReceived):
                body.append(event.data)
                # give the window back at once: a long stream must never stall on it
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.ended = "the server ended the stream (END_STREAM)"
            elif isinstance(event, StreamReset):
                self._stop(f"the server reset the stream (RST_STREAM {_code(event.error_code)})")
            elif isinstance(event, ConnectionTerminated):
                # A graceful GOAWAY that covers our stream lets it go on (nginx reload);
                # an error or one that excludes it ends it.
                covered = (event.last_stream_id or 0) >= self.stream_id
                if event.error_code != ErrorCodes.NO_ERROR or not covered:
                    self._stop(
                        "the server closed the HTTP/2 connection"
                        f" (GOAWAY {_code(event.error_code)}, last stream {event.last_stream_id})"
                    )
            if self.ended is not None or self.error is not None:
                break
        return body

    def _stop(self, why: str) -> None:
        if self.head is None:
            self.error = ProtocolError("status", f"{why} before the response headers")
        else:
            self.ended = why

    @staticmethod
    def _head(fields: list[tuple[bytes, bytes]]) -> ResponseHead:
        headers: dict[str, str] = {}
        status = 0
        for raw_name, raw_value in fields:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == ":status":
                status = int(value)  # h2 has checked it is three digits
            elif not name.startswith(":"):
                headers[name] = headers[name] + ", " + value if name in headers else value
        try:
            reason = HTTPStatus(status).phrase  # HTTP/2 carries no reason phrase
        except ValueError:
            reason = ""
        return ResponseHead("2", status, reason, headers)

    def outgoing(self) -> bytes:
        return self.conn.data_to_send()

    def feed_eof(self) -> None:
        if self.head is None and self.error is None:
            self.error = ProtocolError("status", "connection closed without any response")

    def eof_reason(self) -> str:
        return "server closed the connection without ending the stream"
