"""Findings about the nginx location that serves an SSE path (standard library only).

``analyze_location()`` looks up the directives in effect where the path is served
(``sse_diagnose_nginx.effective``) and runs one small check per finding id: each check
returns its finding or None. Every finding names the file:line of the directive in effect
(or of the location when nginx's default applies).

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_nginx_findings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx import (
    Directive,
    Effective,
    Location,
    NginxConfig,
    effective,
    finding,
    levels_for,
    nginx_seconds,
    proxy_target,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import _quote

__all__ = ["analyze_location"]

# the directives the checks read, looked up where the path is served
WATCHED = (
    "proxy_buffering",
    "proxy_cache",
    "proxy_read_timeout",
    "proxy_send_timeout",
    "send_timeout",
    "gzip",
    "gzip_types",
    "proxy_http_version",
    "proxy_set_header",
    "add_header",
    "proxy_ignore_headers",
    "proxy_pass",
    "access_log",
    "proxy_request_buffering",
)
# reported as lists of their own, not as one value
LISTS = ("proxy_set_header", "add_header", "access_log", "proxy_ignore_headers")


def _secs(value: float) -> str:
    return f"{value:g} s"


@dataclass
class Site:
    """An SSE path where nginx serves it: the directives in effect there."""

    path: str
    location: Location
    eff: dict[str, Effective]
    keepalive: float

    @property
    def label(self) -> str:
        return f"{self.path} ({self.location.describe()} at {self.location.directive.where})"

    def where(self, name: str) -> str:
        """file:line of the directive in effect, or of the location for nginx's default."""
        eff = self.eff[name]
        return eff.where if not eff.is_default else self.location.directive.where

    def ignored(self) -> set[str]:
        return {a.lower() for d in self.eff["proxy_ignore_headers"].directives for a in d.args}


def _header(eff: Effective, header: str) -> Directive | None:
    """The array directive line that sets ``header`` (proxy_set_header, add_header)."""
    for d in eff.directives:
        if d.args and d.args[0].lower() == header.lower():
            return d
    return None


def _lost_note(eff: Effective, header: str, directive: str) -> str:
    """Why an outer ``directive header`` line does not apply here (the array replacement)."""
    outer = _header(Effective(eff.name, eff.replaced), header)
    if outer is None or not eff.directives:
        return ""
    return (
        f" ({directive} {header} at {outer.where} is not inherited: the {eff.level}'s own"
        f" {directive} lines at {eff.directives[0].where} replace ALL of the outer level's)"
    )


def _header_list(eff: Effective) -> dict[str, Any]:
    return {
        "level": eff.level,
        "headers": [
            {"value": " ".join(_quote(a) for a in d.args), "where": d.where} for d in eff.directives
        ],
        "replaced": [d.where for d in eff.replaced],
    }


# --------------------------------------------------------------------------------------------
# One check per finding id
# --------------------------------------------------------------------------------------------


def no_proxy_pass(site: Site, target: dict[str, Any]) -> dict[str, Any] | None:
    if target:
        return None
    return finding(
        "nginx.no_proxy_pass",
        "critical",
        f"{site.label} has no proxy_pass: nginx answers {site.path} itself instead of passing"
        " it to the backend",
        site.location.directive.where,
        path=site.path,
    )


def proxy_buffering(site: Site) -> dict[str, Any] | None:
    eff = site.eff["proxy_buffering"]
    if (eff.value or "on").lower() != "on":
        return None
    origin = (
        f"proxy_buffering on at {eff.where}"
        if not eff.is_default
        else "proxy_buffering is on by default (no proxy_buffering off)"
    )
    ignore = next(
        (
            d
            for d in site.eff["proxy_ignore_headers"].directives
            if "x-accel-buffering" in [a.lower() for a in d.args]
        ),
        None,
    )
    if ignore is None:
        return finding(
            "nginx.proxy_buffering",
            "warning",
            f"{origin} for {site.label}: the stream is unbuffered only while the backend sends"
            " 'X-Accel-Buffering: no' (set proxy_buffering off for the SSE location)",
            site.where("proxy_buffering"),
            path=site.path,
            needs_backend_header=True,
        )
    return finding(
        "nginx.proxy_buffering",
        "critical",
        f"nginx buffers the stream for {site.label}: {origin}, and proxy_ignore_headers"
        f" X-Accel-Buffering at {ignore.where} makes it ignore the backend's"
        " 'X-Accel-Buffering: no'; keepalives sit in nginx's buffer and never reach the"
        " client, which gives up (499)",
        eff.where if not eff.is_default else ignore.where,
        path=site.path,
        also=[ignore.where],
    )


def proxy_cache(site: Site) -> dict[str, Any] | None:
    eff = site.eff["proxy_cache"]
    if not eff.value or eff.value.lower() == "off":
        return None
    return finding(
        "nginx.proxy_cache",
        "critical",
        f"proxy_cache {eff.value} at {eff.where} caches {site.label}: a cached response"
        " is only passed on complete, and an event stream never completes",
        eff.where,
        path=site.path,
    )


def proxy_read_timeout(site: Site) -> dict[str, Any] | None:
    eff = site.eff["proxy_read_timeout"]
    read = nginx_seconds(eff.value or "60s")
    origin = "proxy_read_timeout " + (eff.value or "60s (nginx default)")
    interval = _secs(site.keepalive)
    if read is None or read >= 2 * site.keepalive:
        return None
    if read <= site.keepalive:
        severity, why = (
            "critical",
            f"is not longer than the backend's keepalive interval ({interval}): nginx closes"
            f" a healthy idle stream after {_secs(read)} without a byte",
        )
    else:
        severity, why = (
            "warning",
            f"leaves little slack over the keepalive interval ({interval}): one late keepalive"
            " and nginx closes the stream",
        )
    message = f"{origin} at {eff.where} for {site.label} {why}"
    return finding(
        "nginx.proxy_read_timeout", severity, message, eff.where, path=site.path, seconds=read
    )


def _send_timeout(site: Site, name: str, what: str) -> dict[str, Any] | None:
    eff = site.eff[name]
    value = nginx_seconds(eff.value or "60s")
    if value is None or value > site.keepalive:
        return None
    return finding(
        f"nginx.{name}",
        "warning",
        f"{name} {eff.value or '60s (nginx default)'} at {eff.where} for {site.label}"
        f" is not longer than the keepalive interval ({_secs(site.keepalive)}); it"
        f" applies {what}, not to an idle stream, but is best above it",
        eff.where,
        path=site.path,
        seconds=value,
    )


def proxy_send_timeout(site: Site) -> dict[str, Any] | None:
    return _send_timeout(
        site, "proxy_send_timeout", "between two writes of the request to the backend"
    )


def send_timeout(site: Site) -> dict[str, Any] | None:
    return _send_timeout(site, "send_timeout", "between two writes to a client that does not read")


def gzip(site: Site) -> dict[str, Any] | None:
    eff = site.eff["gzip"]
    if (eff.value or "off").lower() != "on":
        return None
    types = " ".join(" ".join(d.args) for d in site.eff["gzip_types"].directives).split()
    if "text/event-stream" in types or "*" in types:
        severity, message = (
            "warning",
            f"gzip on at {eff.where} compresses {site.label} (gzip_types at"
            f" {site.eff['gzip_types'].where} includes text/event-stream): events wait in the"
            " compressor until a flush; set gzip off for the SSE location",
        )
    else:
        severity, message = (
            "info",
            f"gzip on at {eff.where} for {site.label}, but text/event-stream is not in"
            " gzip_types: streams are not compressed",
        )
    return finding("nginx.gzip", severity, message, eff.where, path=site.path)


def proxy_http_version(site: Site) -> dict[str, Any] | None:
    eff = site.eff["proxy_http_version"]
    version = eff.value or "1.0"
    if version == "1.1":
        return None
    return finding(
        "nginx.proxy_http_version",
        "warning",
        f"proxy_http_version {version}{' (nginx default)' if eff.is_default else ''} at"
        f" {eff.where} for {site.label}: HTTP/1.0 to the backend, no chunked"
        " streaming; set proxy_http_version 1.1",
        site.where("proxy_http_version"),
        path=site.path,
    )


def connection_header(site: Site) -> dict[str, Any] | None:
    headers = site.eff["proxy_set_header"]
    if _header(headers, "Connection") is not None:
        return None
    note = _lost_note(headers, "Connection", "proxy_set_header")
    return finding(
        "nginx.connection_header",
        "warning",
        f"nginx sends 'Connection: close' to the backend for {site.label}{note}; set"
        " proxy_set_header Connection '' with proxy_http_version 1.1",
        headers.where if headers.directives else site.location.directive.where,
        path=site.path,
    )


def x_accel_buffering(site: Site) -> dict[str, Any] | None:
    adds = site.eff["add_header"]
    accel = _header(adds, "X-Accel-Buffering")
    if accel is not None and not (len(accel.args) > 1 and accel.args[1].lower() != "no"):
        return None
    note = _lost_note(adds, "X-Accel-Buffering", "add_header")
    return finding(
        "nginx.x_accel_buffering",
        "warning",
        f"no 'add_header X-Accel-Buffering no' in effect for {site.label}{note}: nginx does not"
        " pass the backend's X-Accel-* headers on, so a proxy in front of this one may"
        " buffer the stream",
        accel.where if accel is not None else site.location.directive.where,
        path=site.path,
    )


CHECKS: list[Callable[[Site], dict[str, Any] | None]] = [
    proxy_buffering,
    proxy_cache,
    proxy_read_timeout,
    proxy_send_timeout,
    send_timeout,
    gzip,
    proxy_http_version,
    connection_header,
    x_accel_buffering,
]


# --------------------------------------------------------------------------------------------
# The settings in the report, and the whole location
# --------------------------------------------------------------------------------------------


def settings(site: Site) -> dict[str, Any]:
    """The SSE-relevant settings where the path is served, each with its file:line."""
    eff = site.eff
    out: dict[str, Any] = {
        name: {"value": e.value, "where": e.where, "level": e.level}
        for name, e in eff.items()
        if name not in LISTS
    }
    ignored = site.ignored()
    out["proxy_buffering"]["ignores_x_accel_buffering"] = "x-accel-buffering" in ignored
    conn = _header(eff["proxy_set_header"], "Connection")
    accel = _header(eff["add_header"], "X-Accel-Buffering")
    out["proxy_set_header"] = _header_list(eff["proxy_set_header"])
    out["connection_header"] = {
        "value": " ".join(_quote(a) for a in conn.args[1:]) if conn else "close (nginx default)",
        "where": conn.where if conn is not None else "nginx default",
    }
    out["add_header"] = _header_list(eff["add_header"])
    out["x_accel_buffering"] = {
        "value": " ".join(accel.args[1:]) if accel is not None else None,
        "where": accel.where if accel is not None else None,
    }
    out["proxy_ignore_headers"] = {
        "value": sorted(ignored),
        "where": [d.where for d in eff["proxy_ignore_headers"].directives],
    }
    out["access_log"] = {
        "value": [" ".join(d.args) for d in eff["access_log"].directives],
        "where": [d.where for d in eff["access_log"].directives],
    }
    out["proxy_read_timeout"]["seconds"] = nginx_seconds(eff["proxy_read_timeout"].value or "60s")
    return out


def analyze_location(
    config: NginxConfig,
    server: Directive,
    chain: list[Location],
    path: str,
    keepalive_interval: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The effective SSE-relevant settings where ``path`` is served, and findings about them."""
    http = config.http()
    assert http is not None
    levels = levels_for(http, server, chain)
    site = Site(
        path, chain[-1], {name: effective(levels, name) for name in WATCHED}, keepalive_interval
    )
    target = proxy_target(config, site.location, path)
    found = [no_proxy_pass(site, target), *(check(site) for check in CHECKS)]
    return {"settings": settings(site), "target": target}, [f for f in found if f]
