"""SSE locations in a server block the role does not own (standard library only).

Role sse_nginx in ``locations`` mode writes only files of its own (a snippet with the SSE
locations, the upstream block, a log format) and one marked ``include`` line in the
user's server block. Before any file changes, this module works on the configuration as
nginx reads it (``nginx -T``) with the planned files put in:

* ``plan_include`` / ``remove_include``: the site file's text with the marked include
  line added to the one server block whose ``server_name`` names the host (or taken out);
* ``shadowing``: every SSE path must be served by the role's own location, exactly as
  nginx picks locations (``match_location`` of the diagnose code, imported, not copied);
  an ``=``, ``^~``, longer prefix or regex location that wins, or a duplicate of the
  path, is quoted with its file and line.

No Ansible imports: shipped to targets as sse.stack module_utils ``nginx_locations``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx import (
    redirects_everything,
    server_names,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_match import (
    Location,
    match_location,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import (
    Directive,
    NginxConfig,
    NginxSyntaxError,
    parse,
    split_dump,
)

__all__ = [
    "LocationsError",
    "Plan",
    "dump_name",
    "include_line",
    "marker",
    "plan_include",
    "remove_include",
    "shadowing",
    "simulate",
]


class LocationsError(ValueError):
    """The change cannot be planned; the message names the variables to change."""


def marker(site: str) -> str:
    """The comment that marks the role's include line for site ``site``."""
    return f"# sse_nginx {site}: SSE locations"


def include_line(snippet: str, site: str) -> str:
    return f"include {snippet}; {marker(site)}"


def _is_marked(line: str, site: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("include ") and stripped.endswith(marker(site))


def dump_name(files: list[tuple[str, str]], path: str) -> str | None:
    """The name nginx -T gives ``path`` (e.g. sites-enabled/x for sites-available/x)."""
    real = os.path.realpath(path)
    for name, _ in files:
        if name == path or os.path.realpath(name) == real:
            return name
    return None


def _where_server(server: Directive) -> str:
    names = " ".join(server_names(server)) or "(no server_name)"
    return f"server {names} at {server.where}"


def target_server(site_text: str, site_file: str, server_name: str) -> Directive:
    """The one server block of the site file that serves ``server_name``.

    A block that only redirects (``return 301 https://...``, the usual port-80 twin) never
    serves a location, so it is not a candidate.
    """
    try:
        directives = parse(site_text, site_file)
    except NginxSyntaxError as exc:
        raise LocationsError(f"sse_nginx_site_file: {exc}") from exc
    servers: list[Directive] = []

    def walk(level: list[Directive]) -> None:
        for d in level:
            if d.name == "server" and d.block is not None:
                servers.append(d)
            elif d.name == "http" and d.block is not None:
                walk(d.block)

    walk(directives)
    named = [s for s in servers if server_name.lower() in (n.lower() for n in server_names(s))]
    serving = [s for s in named if redirects_everything(s) is None]
    if len(serving) == 1:
        return serving[0]
    if not serving:
        seen = "; ".join(_where_server(s) for s in servers) or "no server block at all"
        extra = (
            f" ({', '.join(s.where for s in named)} only redirect{'s' if len(named) == 1 else ''})"
            if named
            else ""
        )
        raise LocationsError(
            f"sse_nginx_site_file {site_file} has no server block that serves "
            f"sse_nginx_server_name {server_name}{extra}; it has: {seen}. Set "
            "sse_nginx_server_name to a name of the server block that should hold the SSE "
            "locations, or sse_nginx_site_file to the file that holds it"
        )
    raise LocationsError(
        f"sse_nginx_site_file {site_file} has {len(serving)} server blocks that serve "
        f"sse_nginx_server_name {server_name}: "
        + "; ".join(_where_server(s) for s in serving)
        + ". The role adds its include line to exactly one: give each block a distinct "
        "server_name, or leave sse_nginx_site_file empty and add the include line yourself"
    )


def plan_include(site_text: str, site_file: str, server_name: str, site: str, snippet: str) -> str:
    """``site_text`` with the marked include line in the server block serving server_name.

    Any marked line is taken out first, then one goes right after the line that opens the
    block (``server {``), indented like the block's first directive: a second run returns
    the text unchanged.
    """
    text = remove_include(site_text, site)
    server = target_server(text, site_file, server_name)
    lines = text.splitlines(keepends=True)
    wanted = include_line(snippet, site)
    brace = _brace_line(lines, server.line)
    if brace is None:
        raise LocationsError(
            f"sse_nginx_site_file {site_file}: cannot find the '{{' of the server block at "
            f"{server.where}; add '{wanted}' to it yourself and leave sse_nginx_site_file empty"
        )
    after = lines[brace - 1].split("#", 1)[0].split("{", 1)[1].strip()
    if after:
        raise LocationsError(
            f"sse_nginx_site_file {site_file}:{brace}: the server block for "
            f"sse_nginx_server_name {server_name} goes on after its '{{' on the same line; "
            f"add '{wanted}' to it yourself and leave sse_nginx_site_file empty"
        )
    indent = "    "
    children = server.block or []
    if children and children[0].line <= len(lines):
        first = lines[children[0].line - 1]
        indent = first[: len(first) - len(first.lstrip())] or indent
    newline = "\r\n" if lines[brace - 1].endswith("\r\n") else "\n"
    if not lines[brace - 1].endswith(("\n", "\r")):
        lines[brace - 1] += newline
    lines.insert(brace, f"{indent}{wanted}{newline}")
    return "".join(lines)


def _brace_line(lines: list[str], start: int) -> int | None:
    """1-based number of the first line from ``start`` with a '{' outside a comment."""
    for number in range(start, len(lines) + 1):
        code = lines[number - 1].split("#", 1)[0]
        if "{" in code:
            return number
        if ";" in code or "}" in code:
            return None
    return None


def remove_include(site_text: str, site: str) -> str:
    """``site_text`` without the role's marked include line(s) for ``site``."""
    lines = site_text.splitlines(keepends=True)
    return "".join(line for line in lines if not _is_marked(line, site))


@dataclass
class Plan:
    """What the SSE paths look like in the configuration with the planned files in."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # server blocks that include the snippet ("server NAMES at FILE:LINE")
    included_in: list[str] = field(default_factory=list)


def simulate(dump: str, planned: dict[str, str | None], main: str | None = None) -> NginxConfig:
    """The configuration of ``nginx -T`` output with files replaced, added or removed."""
    files = split_dump(dump)
    known = {name for name, _ in files}
    renamed = {path: dump_name(files, path) or path for path in planned}
    out: list[tuple[str, str]] = []
    for name, content in files:
        sources = [p for p, n in renamed.items() if n == name]
        if sources:
            new = planned[sources[0]]
            if new is not None:
                out.append((name, new))
            continue
        out.append((name, content))
    for path, name in renamed.items():
        if name not in known and planned[path] is not None:
            out.append((path, planned[path] or ""))
    return NginxConfig(out, main)


def _top_locations(server: Directive) -> list[Location]:
    return [
        Location.of(d) for d in server.block or [] if d.name == "location" and d.block is not None
    ]


def shadowing(config: NginxConfig, snippet: str, paths: list[str]) -> Plan:
    """Whether each SSE path is served by the snippet's own location in every server
    block that includes the snippet; what else would serve it, with file and line."""
    plan = Plan()
    for server in config.servers():
        ours = [loc for loc in _top_locations(server) if loc.directive.file == snippet]
        if not ours:
            continue
        plan.included_in.append(_where_server(server))
        for path in paths:
            mine = next((loc for loc in ours if loc.static and loc.name == path), None)
            if mine is None:
                continue
            for other in _top_locations(server):
                if other.directive is mine.directive or not other.static or other.kind == "exact":
                    continue
                if other.name == path:
                    plan.problems.append(
                        f"{other.directive.where}: {other.describe()} duplicates the SSE location "
                        f"{path} (sse_nginx_sse_locations) in {_where_server(server)}; nginx "
                        "refuses a duplicate location: remove one of them"
                    )
            errors: list[str] = []
            found = match_location(server, path, errors)
            plan.warnings.extend(errors)
            winner = found.chain[0] if found.chain else None
            duplicate = winner is not None and winner.kind != "exact" and winner.name == path
            if winner is not None and winner.directive is not mine.directive and not duplicate:
                plan.problems.append(
                    f"{winner.directive.where}: {winner.describe()} would serve the SSE path "
                    f"{path} (sse_nginx_sse_locations) in {_where_server(server)}, not the role's "
                    f"location in {snippet}: nginx picks it first ({_why(winner)}); change or "
                    "remove that location, or pick another SSE path"
                )
    return plan


def _why(loc: Location) -> str:
    return {
        "exact": "an exact match ends the search",
        "noregex": "a longer ^~ prefix stops the regular expressions and wins",
        "prefix": "a longer prefix wins",
        "regex": "a matching regular expression wins over any prefix without ^~",
        "iregex": "a matching regular expression wins over any prefix without ^~",
    }.get(loc.kind, loc.kind)
