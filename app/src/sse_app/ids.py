"""Event ids as they arrive from outside (a client's Last-Event-ID) and from the broker.

Ids are integers of at most 19 digits (they stay below 2**63, so every id fits the
signed 64-bit integers a client may store them in). Only ASCII digits count:
``str.isdigit`` also accepts "²" and other scripts' digits, which ``int`` then refuses
(a 500) or reads as a number nobody sent.

Without a broker an id is the publish time in microseconds (16 digits). With a broker
(SSE_BROKER_URL) it is the Redis stream entry id ``<ms>-<seq>`` written as one integer,
``ms * 1_000_000 + seq`` (19 digits until the year 2262): the same order as the stream,
one number a client resumes from, and above every in-process id, so a client that still
holds one of those resumes from the oldest retained event.
"""

from __future__ import annotations

import re

MAX_ID_DIGITS = 19
MAX_ID = 2**63 - 1
_DIGITS = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")


def parse_id(raw: str) -> int | None:
    """The id in ``raw`` (surrounding spaces allowed), or None when it is not one of ours."""
    text = raw.strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


# A stream id's sequence counts entries within one millisecond; a million would take a
# Redis server at least a second of that millisecond, so it never reaches this bound.
STREAM_SEQ_BASE = 1_000_000
_STREAM_ID = re.compile(r"([0-9]{1,13})-([0-9]{1,6})")


def from_stream_id(raw: str) -> int:
    """The SSE id of a Redis stream entry id ``<ms>-<seq>``; ValueError when it has none."""
    match = _STREAM_ID.fullmatch(raw)
    if match is None:
        raise ValueError(f"not a stream entry id of this app: {raw!r}")
    value = int(match.group(1)) * STREAM_SEQ_BASE + int(match.group(2))
    if value > MAX_ID:  # the regex already keeps seq below STREAM_SEQ_BASE
        raise ValueError(f"stream entry id out of range: {raw!r}")
    return value


def to_stream_id(value: int) -> str:
    """The Redis stream entry id ``<ms>-<seq>`` of an SSE id (any valid id maps to one)."""
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"not an event id: {value}")
    return f"{value // STREAM_SEQ_BASE}-{value % STREAM_SEQ_BASE}"
