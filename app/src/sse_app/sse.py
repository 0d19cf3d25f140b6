"""The text/event-stream wire format (WHATWG HTML, "Server-sent events")."""

from __future__ import annotations

import re

# The spec accepts CRLF, lone CR and lone LF as line ends; str.splitlines() would also
# split on characters (\v, \f, \x1c, U+2028, ...) that EventSource treats as data.
_LINE_END = re.compile(r"\r\n|\r|\n")

OK = b":ok\n\n"
KEEPALIVE = b":keepalive\n\n"


def retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


def event(event_id: int, data: str, name: str | None = None) -> bytes:
    lines = [f"id: {event_id}"]
    if name:
        lines.append(f"event: {name}")
    # One data: line per source line; the browser joins them back with "\n".
    lines.extend(f"data: {line}" for line in _LINE_END.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def valid_field_value(value: str) -> bool:
    """A value for event:/id: must not contain a line end (it would inject fields)."""
    return _LINE_END.search(value) is None and "\0" not in value
