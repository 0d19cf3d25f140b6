"""Event ids as they arrive from outside (a peer's X-SSE-Event-Id, a client's Last-Event-ID).

Ids are publish times in microseconds: 16 digits today, at most 19 (they stay below
2**63, so every id fits the signed 64-bit integers a client may store them in). Only
ASCII digits count: ``str.isdigit`` also accepts "²" and other scripts' digits, which
``int`` then refuses (a 500) or reads as a number nobody sent.
"""

from __future__ import annotations

import re
import time

MAX_ID_DIGITS = 19
MAX_ID = 2**63 - 1
# A peer's clock may run ahead of ours, but an id far in the future would push every id
# this backend gives after it (ids never go back) and order its events wrongly for good.
MAX_PEER_CLOCK_AHEAD_S = 300

_DIGITS = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")


def parse_id(raw: str) -> int | None:
    """The id in ``raw`` (surrounding spaces allowed), or None when it is not one of ours."""
    text = raw.strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def forwarded_id_error(raw: str, now_us: int | None = None) -> str | None:
    """Why a peer's id is refused (for a 400), or None when it is acceptable."""
    value = parse_id(raw)
    if value is None:
        return f"must be an event id: 1-{MAX_ID_DIGITS} ASCII digits, below 2**63"
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    if value > now_us + MAX_PEER_CLOCK_AHEAD_S * 1_000_000:
        return (
            f"is more than {MAX_PEER_CLOCK_AHEAD_S} s ahead of this backend's clock"
            " (ids are publish times in microseconds)"
        )
    return None
