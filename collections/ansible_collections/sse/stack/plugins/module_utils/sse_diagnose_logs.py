"""nginx access log over a time window, read through its own log_format (standard library only).

``LogFormat`` turns an nginx ``log_format`` string into a regular expression, so any format
works as long as it logs ``$status`` and the request (``$request``, ``$request_uri`` or
``$uri``); ``$request_time`` adds durations and ``$time_local`` / ``$time_iso8601`` /
``$msec`` the window. ``analyze()`` reads the file from its end back to the start of the
window and summarizes the requests to the SSE paths by status, flagging 499 (the client
gave up) and 504 (nginx gave up on the backend) that ended quickly: the incident's symptom.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_logs``.
"""

from __future__ import annotations

import os
import re
import statistics
from datetime import datetime
from typing import Any

__all__ = ["LogFormat", "analyze", "parse_window", "read_window"]

_WINDOW = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)?")
_WINDOW_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, None: 1}

# patterns for the variables the analysis reads; every other one matches lazily
_VARIABLE_PATTERNS = {
    "status": r"\d{3}",
    "request_time": r"[0-9.]+|-",
    "time_local": r"[^\]]+",
    "time_iso8601": r"\S+",
    "msec": r"[0-9.]+",
}
_READ_BLOCK = 64 * 1024
MAX_LINES = 500_000


def parse_window(text: str | float | int) -> float:
    """Seconds in "1h", "30m", "90s", "2d", "1h30m" or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"window must be positive, got {text!r}")
        return float(text)
    value, pos, total = str(text).strip(), 0, 0.0
    if not value:
        raise ValueError("window is empty")
    while pos < len(value):
        match = _WINDOW.match(value, pos)
        if not match or match.end() == pos:
            raise ValueError(f"window {text!r} is not a time span like 1h, 30m, 2d or 90s")
        total += float(match.group(1)) * _WINDOW_UNITS[match.group(2)]
        pos = match.end()
    if total <= 0:
        raise ValueError(f"window must be positive, got {text!r}")
    return total


class LogFormat:
    """An nginx log_format string as a regular expression."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.variables: list[str] = []
        pattern, pos = [], 0
        for match in re.finditer(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))", fmt):
            pattern.append(re.escape(fmt[pos : match.start()]))
            name = match.group(1) or match.group(2)
            body = _VARIABLE_PATTERNS.get(name, r".*?")
            if name in self.variables:
                pattern.append(f"(?:{body})")
            else:
                self.variables.append(name)
                pattern.append(f"(?P<{name}>{body})")
            pos = match.end()
        pattern.append(re.escape(fmt[pos:]))
        self.regex = re.compile("".join(pattern))

    @property
    def usable(self) -> bool:
        return "status" in self.variables and bool(
            {"request", "request_uri", "uri"} & set(self.variables)
        )

    def parse(self, line: str) -> dict[str, Any] | None:
        match = self.regex.fullmatch(line.rstrip("\r\n"))
        if not match:
            return None
        fields = match.groupdict()
        out: dict[str, Any] = {"status": int(fields["status"])}
        if fields.get("request"):
            parts = fields["request"].split(" ")
            out["method"] = parts[0] if len(parts) > 1 else ""
            target = parts[1] if len(parts) > 1 else parts[0]
        else:
            target = fields.get("request_uri") or fields.get("uri") or ""
        out["path"] = target.split("?", 1)[0]
        rt = fields.get("request_time")
        out["rt"] = float(rt) if rt and rt != "-" else None
        out["time"] = _timestamp(fields)
        probe = fields.get("http_x_sseprobe_id")
        out["probe"] = None if probe in (None, "", "-") else probe
        return out


def _timestamp(fields: dict[str, str]) -> float | None:
    try:
        if fields.get("msec"):
            return float(fields["msec"])
        if fields.get("time_local"):
            return datetime.strptime(fields["time_local"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        if fields.get("time_iso8601"):
            return datetime.fromisoformat(fields["time_iso8601"]).timestamp()
    except ValueError:
        return None
    return None


def _lines_backwards(path: str):
    """The file's lines, last first (bytes decoded leniently)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        pos, rest = handle.tell(), b""
        while pos > 0:
            size = min(_READ_BLOCK, pos)
            pos -= size
            handle.seek(pos)
            chunk = handle.read(size) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            for raw in reversed(lines[1:]):
                if raw:
                    yield raw.decode("utf-8", "replace")
        if rest:
            yield rest.decode("utf-8", "replace")


def read_window(path: str, fmt: LogFormat, since: float) -> tuple[list[dict[str, Any]], int]:
    """Parsed entries at or after ``since`` (epoch seconds), oldest first; and unparsed lines."""
    entries, unparsed = [], 0
    for count, line in enumerate(_lines_backwards(path)):
        if count >= MAX_LINES:
            break
        entry = fmt.parse(line)
        if entry is None:
            unparsed += 1
            continue
        if entry["time"] is not None and entry["time"] < since:
            break
        entries.append(entry)
    entries.reverse()
    return entries, unparsed


def _stats(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"rt_min": None, "rt_median": None, "rt_max": None}
    return {
        "rt_min": round(min(times), 3),
        "rt_median": round(statistics.median(times), 3),
        "rt_max": round(max(times), 3),
    }


def analyze(
    entries: list[dict[str, Any]],
    paths: list[str],
    short: float,
    exclude_probe_prefix: str = "",
) -> dict[str, Any]:
    """Per SSE path: requests by status with request times; short 499/504 counted apart."""
    out: dict[str, Any] = {}
    for path in paths:
        mine = [
            e
            for e in entries
            if e["path"] == path
            and not (
                exclude_probe_prefix and (e.get("probe") or "").startswith(exclude_probe_prefix)
            )
        ]
        by_status: dict[str, Any] = {}
        for status in sorted({e["status"] for e in mine}):
            same = [e for e in mine if e["status"] == status]
            times = [e["rt"] for e in same if e["rt"] is not None]
            by_status[str(status)] = {"count": len(same), **_stats(times)}
        symptom = [
            e for e in mine if e["status"] in (499, 504) and e["rt"] is not None and e["rt"] < short
        ]
        out[path] = {
            "requests": len(mine),
            "by_status": by_status,
            "short_499": sum(1 for e in symptom if e["status"] == 499),
            "short_504": sum(1 for e in symptom if e["status"] == 504),
            "errors_5xx": sum(1 for e in mine if 500 <= e["status"] < 600),
            "short_limit_s": round(short, 3),
        }
    return out
