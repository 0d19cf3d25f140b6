"""nginx access log over a time window, read through its own log_format (standard library only).

``LogFormat`` turns an nginx ``log_format`` string into a regular expression, so any format
works as long as it logs ``$status`` and the request (``$request``, ``$request_uri`` or
``$uri``); ``$request_time`` adds durations and ``$time_local`` / ``$time_iso8601`` /
``$msec`` the window. ``analyze()`` reads the file from its end back to the start of the
window and summarizes the requests to the SSE paths by status, flagging 499 (the client
gave up) and 504 (nginx gave up on the backend) that ended quickly: the incident's symptom.

``log_section()`` is the access log's part of a host's report: which log nginx writes for
the SSE location, read with its own log_format, and the findings about it.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_logs``.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from datetime import datetime
from typing import Any

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import COMBINED
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import finding

__all__ = ["LogFormat", "analyze", "log_section", "own_line", "parse_window", "read_window"]

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


# --------------------------------------------------------------------------------------------
# The access log of the SSE location, as a section of the report
# --------------------------------------------------------------------------------------------


def _candidates(params: dict[str, Any], nginx: dict[str, Any]) -> list[dict[str, str]]:
    """The access logs nginx writes for the SSE paths (or sse_diagnose_access_log)."""
    candidates: list[dict[str, str]] = []
    for entry in (nginx.get("paths") or {}).values():
        for server in entry["servers"]:
            candidates += [log for log in server["access_logs"] if log not in candidates]
    if params["access_log"]:
        known = next((c for c in candidates if c["path"] == params["access_log"]), None)
        default = {"path": params["access_log"], "format": "", "where": "sse_diagnose_access_log"}
        candidates = [known or default]
    return candidates


def _format(nginx: dict[str, Any], name: str) -> LogFormat:
    config = nginx.get("config")
    formats = config.log_formats() if config else {"combined": COMBINED}
    text = formats.get(name) if name else None
    # not from the configuration: the sse_timed format of role sse_nginx, else combined
    return LogFormat(text or formats.get("sse_timed") or formats.get("combined") or COMBINED)


def _unusable(log: dict[str, str], fmt: LogFormat) -> dict[str, Any] | None:
    """Why the log cannot be read: format, missing or unreadable finding; None if it can."""
    path = log["path"]
    if not fmt.usable:
        why = (
            f"log_format {log['format']} of {path} logs no $status or no request: cannot analyse it"
        )
        return finding("access_log.format", "warning", why, log["where"])
    if not os.path.exists(path):
        why = f"access log {path} does not exist"
        return finding("access_log.missing", "warning", why, log["where"])
    return None


def symptom(path: str, sse_path: str, stats: dict[str, Any], since: str) -> dict[str, Any] | None:
    if not (stats["short_499"] or stats["short_504"]):
        return None
    return finding(
        "access_log.symptom",
        "warning",
        f"the incident's symptom in {path} since {since}: {sse_path} ended"
        f" {stats['short_499']} times with 499 (the client gave up) and"
        f" {stats['short_504']} times with 504 (nginx gave up on the backend) in"
        f" less than {stats['short_limit_s']:g} s (of {stats['requests']} requests)",
        path,
        path=sse_path,
    )


def errors(path: str, sse_path: str, stats: dict[str, Any], since: str) -> dict[str, Any] | None:
    counts = {s: v["count"] for s, v in stats["by_status"].items() if s[0] == "5" and s != "504"}
    if not counts:
        return None
    return finding(
        "access_log.errors",
        "warning",
        f"{sse_path} answered "
        + ", ".join(f"{c} x {s}" for s, c in counts.items())
        + f" in {path} since {since} (502: nginx could not reach the backend)",
        path,
    )


def log_section(
    params: dict[str, Any], nginx: dict[str, Any], since: float, probe_prefix: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The access log's part of the report (``probe_prefix``: the diagnosis' own probes)."""
    candidates = _candidates(params, nginx)
    if not candidates:
        why = (
            "no access log to read for the SSE paths (none in the configuration; set"
            " sse_diagnose_access_log)"
        )
        return {}, [finding("access_log.none", "info", why)]
    log = candidates[0]
    path = log["path"]
    if "$" in path:
        why = f"access log {path} has variables in its name"
        return {"path": path}, [finding("access_log.variable", "info", why, log["where"])]
    fmt = _format(nginx, log["format"])
    stamp = _iso(since)
    info: dict[str, Any] = {
        "path": path,
        "format": log["format"] or "-",
        "where": log["where"],
        "since": stamp,
        "readable": False,
    }
    problem = _unusable(log, fmt)
    if problem is not None:
        return info, [problem]
    try:
        entries, unparsed = read_window(path, fmt, since)
    except OSError as exc:
        why = f"cannot read access log {path}: {exc.strerror or exc}"
        return info, [finding("access_log.unreadable", "warning", why, log["where"])]
    found = []
    if unparsed and not entries:
        why = f"none of the lines of {path} match its log_format {log['format']}"
        found.append(finding("access_log.format", "warning", why, log["where"]))
    short = 2 * params["keepalive_interval"] + params["tolerance"]
    info.update(
        {
            "readable": True,
            "entries_in_window": len(entries),
            "unparsed_lines": unparsed,
            "paths": analyze(entries, params["paths"], short, probe_prefix),
            "rt_available": "request_time" in fmt.variables,
            "probe_id_logged": "http_x_sseprobe_id" in fmt.variables,
            "fmt": fmt,
        }
    )
    for sse_path, stats in info["paths"].items():
        found += [symptom(path, sse_path, stats, stamp), errors(path, sse_path, stats, stamp)]
    return info, [f for f in found if f]


def own_line(log: dict[str, Any], probe_id: str, wait: float = 3.0) -> str | None:
    """nginx's access log line for the probe's own request (written when the stream ends)."""
    fmt = log.get("fmt")
    if not fmt or not log.get("probe_id_logged"):
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(log["path"], "rb") as handle:
                handle.seek(max(0, os.path.getsize(log["path"]) - 256 * 1024))
                for raw in reversed(handle.read().split(b"\n")):
                    line = raw.decode("utf-8", "replace")
                    if f'"{probe_id}"' in line or f"={probe_id} " in line:
                        return line
        except OSError:
            return None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.3)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
