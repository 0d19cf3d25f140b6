"""nginx's settings where a request is served, for the SSE diagnosis (standard library only).

On top of ``sse_diagnose_nginx_parse`` (the configuration from ``nginx -T``, every directive
with its file and line) and ``sse_diagnose_nginx_match`` (the location nginx picks):

* ``effective()`` looks a directive up through location -> server -> http, as nginx merges
  them: the innermost level that sets it wins; for array directives (``proxy_set_header``,
  ``add_header``, ``access_log``, ``proxy_ignore_headers``) a level that sets ANY of them
  replaces everything from the outer levels;
* values (``nginx_seconds``), server blocks (``listens``, ``server_matches``,
  ``redirects_everything``), where ``proxy_pass`` sends a request (``proxy_target``) and the
  access logs in effect (``access_logs``).

The findings about an SSE location are in ``sse_diagnose_nginx_findings``. This module also
re-exports the names of the parse and match modules, so one import serves the callers.
No Ansible imports: shipped to targets as sse.stack module_utils ``sse_diagnose_nginx``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_match import (
    Location,
    Match,
    find_location,
    match_location,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import (
    COMBINED,
    Directive,
    NginxConfig,
    NginxSyntaxError,
    parse,
    split_dump,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import finding

__all__ = [
    "COMBINED",
    "Directive",
    "Effective",
    "Location",
    "Match",
    "NginxConfig",
    "NginxSyntaxError",
    "access_logs",
    "effective",
    "find_location",
    "finding",
    "levels_for",
    "listens",
    "match_location",
    "nginx_seconds",
    "parse",
    "proxy_target",
    "redirects_everything",
    "server_matches",
    "server_names",
    "split_dump",
]

# directives whose occurrences at one level form one list that replaces the outer lists
ARRAY_DIRECTIVES = {"proxy_set_header", "add_header", "access_log", "proxy_ignore_headers"}


# --------------------------------------------------------------------------------------------
# Inheritance
# --------------------------------------------------------------------------------------------


@dataclass
class Effective:
    """A directive's value where a request is served, and where that value comes from."""

    name: str
    directives: list[Directive] = field(default_factory=list)  # [] means nginx's default
    level: str = "default"  # http | server | location | default
    replaced: list[Directive] = field(default_factory=list)  # outer ones a level replaced

    @property
    def is_default(self) -> bool:
        return not self.directives

    @property
    def value(self) -> str | None:
        return " ".join(self.directives[-1].args) if self.directives else None

    @property
    def where(self) -> str:
        return self.directives[-1].where if self.directives else "nginx default"


def effective(levels: list[tuple[str, Directive]], name: str) -> Effective:
    """Look ``name`` up from the innermost level out (``levels``: outermost first)."""
    for i in range(len(levels) - 1, -1, -1):
        label, block = levels[i]
        found = [d for d in block.block or [] if d.name == name]
        if found:
            replaced: list[Directive] = []
            if name in ARRAY_DIRECTIVES:
                for _, outer in levels[:i]:
                    replaced.extend(d for d in outer.block or [] if d.name == name)
            return Effective(name, found, label, replaced)
    return Effective(name)


def levels_for(
    http: Directive, server: Directive, chain: list[Location]
) -> list[tuple[str, Directive]]:
    return [("http", http), ("server", server)] + [("location", loc.directive) for loc in chain]


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

_TIME_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "M": 2592000,
    "y": 31536000,
}
_TIME_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")


def nginx_seconds(value: str | None) -> float | None:
    """Seconds in an nginx time ("1h30m", "500ms", "60"); None when it is not one."""
    if value is None:
        return None
    text, pos, total = str(value).strip(), 0, 0.0
    if not text:
        return None
    while pos < len(text):
        match = _TIME_PART.match(text, pos)
        if not match:
            return None
        total += int(match.group(1)) * _TIME_UNITS[match.group(2) or "s"]
        pos = match.end()
    return total


def listens(server: Directive) -> list[dict[str, Any]]:
    """The server's listen directives as {address, port, ssl, where}."""
    out = []
    for d in server.children("listen") or []:
        if not d.args:
            continue
        addr = d.args[0]
        if addr.startswith("unix:"):
            out.append({"address": addr, "port": None, "ssl": "ssl" in d.args, "where": d.where})
            continue
        host, port = "", addr
        match = re.fullmatch(r"(\[[^\]]+\]|[^:]+):(\d+)", addr)
        if match:
            host, port = match.group(1), match.group(2)
        elif not addr.isdigit():
            host, port = addr, "80"
        out.append(
            {"address": host or "*", "port": int(port), "ssl": "ssl" in d.args, "where": d.where}
        )
    if not out:
        out.append({"address": "*", "port": 80, "ssl": False, "where": "nginx default"})
    return out


def server_names(server: Directive) -> list[str]:
    return [n for d in server.children("server_name") for n in d.args]


def server_matches(server: Directive, name: str) -> bool:
    """Whether a request for host ``name`` can be served by ``server`` (by its server_name)."""
    for candidate in server_names(server):
        if candidate.startswith("~"):
            try:
                if re.search(candidate[1:], name, re.IGNORECASE):
                    return True
            except re.error:
                continue
        elif _name_matches(candidate.lower(), name.lower()):
            return True
    return False


def _name_matches(candidate: str, name: str) -> bool:
    """A non-regex server_name: exact, "*.example.com", "www.example.*" or ".example.com"."""
    if candidate.startswith("*."):
        return name.endswith(candidate[1:])
    if candidate.endswith(".*"):
        return name.startswith(candidate[:-1])
    if candidate.startswith("."):
        return name == candidate[1:] or name.endswith(candidate)
    return candidate == name


def redirects_everything(server: Directive) -> Directive | None:
    """A server-level return/rewrite ... permanent|redirect: no location ever serves a request."""
    for d in server.block or []:
        if d.name == "return":
            return d
        if d.name == "rewrite" and len(d.args) >= 3 and d.args[2] in ("permanent", "redirect"):
            return d
    return None


def _upstream_servers(config: NginxConfig, hostpart: str, scheme: str) -> dict[str, Any]:
    """The servers a proxy_pass host sends to: an upstream block's live ones, or the host."""
    block = config.upstream(hostpart) if "$" not in hostpart else None
    if block is not None:
        live = [
            s
            for s in block.children("server")
            if s.args and "down" not in s.args[1:] and "backup" not in s.args[1:]
        ]
        return {
            "servers": [s.args[0] for s in live],
            "server_where": [s.where for s in live],
            "upstream": {"name": hostpart, "where": block.where},
        }
    if "$" in hostpart:
        return {"servers": [], "server_where": [], "upstream": None}
    port = "" if re.search(r":\d+$", hostpart) else (":443" if scheme == "https" else ":80")
    return {"servers": [hostpart + port], "server_where": [], "upstream": None}


def proxy_target(config: NginxConfig, location: Location, uri: str) -> dict[str, Any]:
    """Where the location's proxy_pass sends ``uri``: {servers, server_where, uri, upstream, where}.

    ``server_where``: file:line of each upstream ``server`` entry (empty for a plain host).
    """
    passes = location.directive.children("proxy_pass")
    if not passes or not passes[-1].args:
        return {}
    d = passes[-1]
    target = d.args[0]
    match = re.fullmatch(r"(https?)://([^/]+)(/.*)?", target)
    if not match:
        return {"proxy_pass": target, "where": d.where, "servers": [], "uri": uri, "scheme": "http"}
    scheme, hostpart, path = match.group(1), match.group(2), match.group(3)
    upstream_uri = uri
    if path is not None and location.static and "$" not in path:
        upstream_uri = path + uri[len(location.name) :]
    return {
        "proxy_pass": target,
        "where": d.where,
        "scheme": scheme,
        **_upstream_servers(config, hostpart, scheme),
        "uri": upstream_uri,
    }


def access_logs(levels: list[tuple[str, Directive]]) -> list[dict[str, str]]:
    """The access logs in effect at ``levels``: [{path, format, where}] (no 'off', no syslog)."""
    eff = effective(levels, "access_log")
    out = []
    for d in eff.directives:
        if not d.args or d.args[0] == "off" or d.args[0].startswith("syslog:"):
            continue
        fmt = d.args[1] if len(d.args) > 1 and "=" not in d.args[1] else "combined"
        out.append({"path": d.args[0], "format": fmt, "where": d.where})
    return out
