"""Filter `sse_nginx_seconds`: an nginx time value ("1h30m", "500ms", "30") in seconds.

It follows nginx's own parser (src/core/ngx_parse.c, ngx_parse_time): a sequence of
<number><unit> parts with units ms, s, m, h, d, w, M (30 days), y (365 days), each unit at
most once and in decreasing order; a trailing bare number counts as seconds ("1h30" is
1h + 30s; "500ms5" is 5.5s). No spaces: the role writes values unquoted, where nginx
would read "1h 30m" as two arguments.

Directives come in two resolutions, and nginx rejects units outside them:
- resolution="ms" (proxy_read_timeout, proxy_send_timeout, worker_shutdown_timeout, ...):
  M and y are invalid;
- resolution="s" (ssl_session_timeout, ...): ms is invalid;
- resolution=None (default): any unit.

    "{{ '1h30m' | sse_nginx_seconds }}"                                  -> 5400
    "{{ item.read_timeout | sse_nginx_seconds('read_timeout', 'ms') }}"  -> names it on error

Returns an int when the value is a whole number of seconds, else a float. Invalid input
raises AnsibleFilterError whose message starts with `name` (default "value").
`nginx_time_problem(value, resolution)` says why a value is not an nginx time (None when
it is) instead of raising: the preflight's input check (nginx_input.py) reports with it.
"""

from __future__ import annotations

import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - only for use without Ansible installed

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        pass


# unit -> milliseconds, in the only order nginx accepts them
_UNITS_MS = {
    "y": 365 * 24 * 3600 * 1000,
    "M": 30 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
_ORDER = list(_UNITS_MS)
_PART = re.compile(r"(\d+)(ms|y|M|w|d|h|m|s)?")
_FORBIDDEN = {"ms": {"M", "y"}, "s": {"ms"}, None: set()}
# nginx keeps times in a signed machine word of milliseconds (ms resolution) or seconds
_MAX = 2**63 - 1


class _Invalid(ValueError):
    """Why a value is not an nginx time."""


def sse_nginx_seconds(value: object, name: str = "value", resolution: str | None = None):
    """Seconds in the nginx time `value`; see the module docstring."""
    try:
        return _seconds(value, resolution)
    except _Invalid as exc:
        raise AnsibleFilterError(f"{name}: {value!r} is not a valid nginx time ({exc})") from None


def nginx_time_problem(value: object, resolution: str | None = None) -> str | None:
    """Why `value` is not an nginx time, or None: for checks that report, not raise."""
    try:
        _seconds(value, resolution)
    except _Invalid as exc:
        return f"is not a valid nginx time ({exc})"
    return None


def _seconds(value: object, resolution: str | None) -> int | float:
    if resolution not in _FORBIDDEN:
        raise AnsibleFilterError(
            f"sse_nginx_seconds: resolution must be 'ms', 's' or None, got {resolution!r}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid("expected a string such as '1h30m' or a whole number of seconds")
    if isinstance(value, int):
        if value < 0:
            raise _Invalid("negative")
        return value
    text = value
    if not text:
        raise _Invalid("empty")
    pos = 0
    last_rank = -1
    total_ms = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise _Invalid(f"unexpected {text[pos]!r} at position {pos}")
        number, unit = match.groups()
        pos = match.end()
        if unit is None:
            # only possible at the end (the regex takes every digit); nginx adds it as
            # seconds whatever came before, so "1s30" and "500ms5" are valid too
            unit = "s"
            rank = len(_ORDER)
        else:
            rank = _ORDER.index(unit)
            if rank <= last_rank:
                raise _Invalid(f"unit {unit!r} repeated or out of order (y M w d h m s ms)")
        if unit in _FORBIDDEN[resolution]:
            allowed = " ".join(u for u in _ORDER if u not in _FORBIDDEN[resolution])
            raise _Invalid(f"unit {unit!r} not allowed here; allowed: {allowed}")
        last_rank = rank
        total_ms += int(number) * _UNITS_MS[unit]
    limit = _MAX if resolution == "ms" else _MAX * 1000
    if total_ms > limit:
        raise _Invalid("too large")
    seconds, millis = divmod(total_ms, 1000)
    return seconds if millis == 0 else total_ms / 1000


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"sse_nginx_seconds": sse_nginx_seconds}
