"""nginx configuration as nginx itself reads it, for the SSE diagnosis (standard library only).

Input is the output of ``nginx -T``: every file nginx read, each after a line
``# configuration file <path>:``. From it:

* ``parse()`` tokenizes like ngx_conf_read_token (quotes, escapes, ``${var}``, comments) and
  builds directives that keep their file and line;
* ``NginxConfig`` resolves ``include`` (globs against the files in the dump, relative to the
  main file's folder, as nginx does), so every directive points at the file it came from;
* ``find_location()`` picks the location that serves a URI the way
  ngx_http_core_find_location does: a location whose name equals the URI (``=`` first),
  else the longest prefix (its nested locations next), then, unless that prefix is ``^~``,
  the regular expressions ``~`` / ``~*`` in the order they appear;
* ``effective()`` looks a directive up through location -> server -> http, as nginx merges
  them: the innermost level that sets it wins; for array directives (``proxy_set_header``,
  ``add_header``, ``access_log``, ``proxy_ignore_headers``) a level that sets ANY of them
  replaces everything from the outer levels;
* ``analyze_location()`` turns that into findings for an SSE stream.

No Ansible imports: shipped to targets as sse.stack module_utils ``sse_diagnose_nginx`` and
imported as is by the unit tests.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Directive",
    "NginxConfig",
    "NginxSyntaxError",
    "analyze_location",
    "effective",
    "find_location",
    "nginx_seconds",
    "parse",
    "split_dump",
]

DUMP_MARKER = re.compile(r"^# configuration file (.+):$")
# blocks whose content is not part of the enclosing level's own settings
SUB_BLOCKS = {"location", "if", "limit_except", "server", "upstream", "types", "map", "geo"}
# directives whose occurrences at one level form one list that replaces the outer lists
ARRAY_DIRECTIVES = {"proxy_set_header", "add_header", "access_log", "proxy_ignore_headers"}

SEVERITIES = ("critical", "warning", "info")
# nginx's predefined log format
COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)


class NginxSyntaxError(ValueError):
    """The configuration text cannot be tokenized (nginx -T never prints such a file)."""


@dataclass
class Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def text(self) -> str:
        """The directive as one line of configuration (block content left out)."""
        words = " ".join([self.name, *(_quote(a) for a in self.args)])
        return words + (" { ... }" if self.block is not None else ";")

    def children(self, name: str | None = None) -> list[Directive]:
        return [d for d in self.block or [] if name is None or d.name == name]


def _quote(arg: str) -> str:
    if arg == "" or re.search(r"[\s;{}\"'#]", arg):
        return "'" + arg.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return arg


# --------------------------------------------------------------------------------------------
# nginx -T output and the tokenizer
# --------------------------------------------------------------------------------------------


def split_dump(text: str) -> list[tuple[str, str]]:
    """(path, content) of each file in ``nginx -T`` output, in the order nginx read them."""
    files: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = DUMP_MARKER.match(line)
        if match:
            files.append((match.group(1), []))
        elif files:
            files[-1][1].append(line)
    return [(path, "\n".join(lines) + "\n") for path, lines in files]


def _tokens(text: str, file: str) -> list[tuple[str, int, bool]]:
    """(word, line, quoted) tokens; ';', '{', '}' come as unquoted one-character words."""
    out: list[tuple[str, int, bool]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch in ";{}":
            out.append((ch, line, False))
            i += 1
            continue
        start_line = line
        if ch in "\"'":
            quote, i, word = ch, i + 1, []
            while True:
                if i >= n:
                    raise NginxSyntaxError(f"{file}:{start_line}: unterminated {quote} string")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    word.append({"t": "\t", "r": "\r", "n": "\n"}.get(nxt, nxt))
                    if nxt not in ("t", "r", "n", "\\", '"', "'"):
                        word[-1] = "\\" + nxt
                    line += nxt == "\n"
                    i += 2
                    continue
                if c == quote:
                    i += 1
                    break
                line += c == "\n"
                word.append(c)
                i += 1
            out.append(("".join(word), start_line, True))
            continue
        word, in_var = [], False
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                word.append(text[i : i + 2])
                i += 2
                continue
            if c == "{" and word and word[-1] == "$":
                in_var = True
            elif c == "}" and in_var:
                in_var = False
            elif c in " \t\r\n;{}" or (c in "\"'" and not word):
                break
            word.append(c)
            i += 1
        out.append(("".join(word), start_line, False))
    return out


def parse(text: str, file: str = "-") -> list[Directive]:
    """Directives of one file (includes not resolved)."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    first_line = 0
    for word, line, quoted in _tokens(text, file):
        if not quoted and word == ";":
            if not words:
                raise NginxSyntaxError(f"{file}:{line}: unexpected ';'")
            stack[-1].append(Directive(words[0], words[1:], file, first_line))
            words = []
        elif not quoted and word == "{":
            if not words:
                raise NginxSyntaxError(f"{file}:{line}: unexpected '{{'")
            block: list[Directive] = []
            stack[-1].append(Directive(words[0], words[1:], file, first_line, block))
            stack.append(block)
            words = []
        elif not quoted and word == "}":
            if words or len(stack) == 1:
                raise NginxSyntaxError(f"{file}:{line}: unexpected '}}'")
            stack.pop()
        else:
            if not words:
                first_line = line
            words.append(word)
    if words:
        raise NginxSyntaxError(f"{file}: unexpected end of file, expecting ';' or '}}'")
    if len(stack) != 1:
        raise NginxSyntaxError(f"{file}: unexpected end of file, expecting '}}'")
    return stack[0]


def _glob_match(pattern: str, path: str) -> bool:
    """glob(3) as nginx's include uses it: '*' stays within one path segment, no dot files."""
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    if len(pat_parts) != len(path_parts):
        return False
    for pat, part in zip(pat_parts, path_parts):
        if part.startswith(".") and not pat.startswith(".") and part != pat:
            return False
        if not fnmatch.fnmatchcase(part, pat):
            return False
    return True


class NginxConfig:
    """The whole configuration from ``nginx -T`` output, includes expanded in place."""

    def __init__(self, files: list[tuple[str, str]], main: str | None = None) -> None:
        if not files:
            raise NginxSyntaxError("no '# configuration file' sections in the nginx -T output")
        self.files = dict(files)
        self.order = [path for path, _ in files]
        self.main = main or self.order[0]
        self.prefix = os.path.dirname(self.main)
        self.warnings: list[str] = []
        self._parsed = {path: parse(content, path) for path, content in files}
        self.tree = self._expand(self._parsed.get(self.main, []), 0)

    @classmethod
    def from_dump(cls, text: str, main: str | None = None) -> NginxConfig:
        return cls(split_dump(text), main)

    def _expand(self, directives: list[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.name == "include" and d.block is None and len(d.args) == 1 and depth < 32:
                pattern = d.args[0]
                if not pattern.startswith("/"):
                    pattern = os.path.join(self.prefix, pattern)
                if any(c in pattern for c in "*?["):
                    matched = sorted(p for p in self.order if _glob_match(pattern, p))
                else:
                    matched = [pattern] if pattern in self._parsed else []
                    if not matched:
                        self.warnings.append(f"{d.where}: include {d.args[0]} is not in the dump")
                for path in matched:
                    out.extend(self._expand(self._parsed[path], depth + 1))
                continue
            if d.block is not None:
                d = Directive(d.name, d.args, d.file, d.line, self._expand(d.block, depth))
            out.append(d)
        return out

    def http(self) -> Directive | None:
        return next((d for d in self.tree if d.name == "http" and d.block is not None), None)

    def servers(self) -> list[Directive]:
        http = self.http()
        return http.children("server") if http else []

    def upstream(self, name: str) -> Directive | None:
        http = self.http()
        for d in http.children("upstream") if http else []:
            if d.args and d.args[0] == name:
                return d
        return None

    def log_formats(self) -> dict[str, str]:
        formats = {"combined": COMBINED}
        http = self.http()
        for d in http.children("log_format") if http else []:
            args = [a for a in d.args[1:] if not a.startswith("escape=")]
            if d.args:
                formats[d.args[0]] = "".join(args)
        return formats


# --------------------------------------------------------------------------------------------
# Location matching and inheritance
# --------------------------------------------------------------------------------------------


@dataclass
class Location:
    directive: Directive
    kind: str  # exact | prefix | noregex | regex | iregex | named
    name: str

    @classmethod
    def of(cls, d: Directive) -> Location:
        args = d.args
        if len(args) >= 2:
            mod, name = args[0], args[1]
            kind = {"=": "exact", "^~": "noregex", "~": "regex", "~*": "iregex"}.get(mod, "prefix")
            return cls(d, kind, name)
        name = args[0] if args else ""
        if name.startswith("@"):
            return cls(d, "named", name)
        if name.startswith("="):
            return cls(d, "exact", name[1:])
        if name.startswith("^~"):
            return cls(d, "noregex", name[2:])
        if name.startswith("~*"):
            return cls(d, "iregex", name[2:])
        if name.startswith("~"):
            return cls(d, "regex", name[1:])
        return cls(d, "prefix", name)

    def regex(self) -> re.Pattern[str]:
        # PCRE named groups (?<name>...) are (?P<name>...) in Python
        pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", self.name)
        return re.compile(pattern, re.IGNORECASE if self.kind == "iregex" else 0)

    def describe(self) -> str:
        mod = {"exact": "= ", "noregex": "^~ ", "regex": "~ ", "iregex": "~* "}.get(self.kind, "")
        return f"location {mod}{self.name}"


# return codes of ngx_http_core_find_location
_OK, _AGAIN, _DECLINED = "ok", "again", "declined"


def _find(uri: str, container: list[Directive], errors: list[str]) -> tuple[str, list[Location]]:
    locations = [Location.of(d) for d in container if d.name == "location" and d.block is not None]
    static = [loc for loc in locations if loc.kind in ("exact", "prefix", "noregex")]
    regexes = [loc for loc in locations if loc.kind in ("regex", "iregex")]

    # ngx_http_core_find_static_location: a name equal to the URI ends the search at once
    equal = [loc for loc in static if loc.name == uri]
    if equal:
        return _OK, [next((loc for loc in equal if loc.kind == "exact"), equal[0])]
    rc, chain, noregex = _DECLINED, [], False
    inclusive = [loc for loc in static if loc.kind != "exact" and uri.startswith(loc.name)]
    if inclusive:
        best = max(inclusive, key=lambda loc: len(loc.name))
        rc, chain, noregex = _AGAIN, [best], best.kind == "noregex"
        nested_rc, nested = _find(uri, best.directive.block or [], errors)
        if nested:
            chain = [best, *nested]
        if nested_rc == _OK:
            return _OK, chain
    if not noregex:
        for loc in regexes:
            try:
                matched = loc.regex().search(uri) is not None
            except re.error as exc:
                errors.append(f"{loc.directive.where}: cannot evaluate {loc.describe()}: {exc}")
                continue
            if matched:
                _, nested = _find(uri, loc.directive.block or [], errors)
                return _OK, [loc, *nested]
    return rc, chain


def find_location(server: Directive, uri: str, errors: list[str] | None = None) -> list[Location]:
    """The location chain (outermost first) that serves ``uri`` in ``server``; [] if none."""
    return _find(uri, server.block or [], errors if errors is not None else [])[1]


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


def _secs(value: float) -> str:
    return f"{value:g} s"


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


def proxy_target(config: NginxConfig, location: Location, uri: str) -> dict[str, Any]:
    """Where the location's proxy_pass sends ``uri``: {servers, uri, upstream, where}."""
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
    if path is not None and location.kind in ("prefix", "noregex", "exact") and "$" not in path:
        upstream_uri = path + uri[len(location.name) :]
    servers: list[str] = []
    upstream = None
    block = config.upstream(hostpart) if "$" not in hostpart else None
    if block is not None:
        upstream = {"name": hostpart, "where": block.where}
        for s in block.children("server"):
            if s.args and "down" not in s.args[1:] and "backup" not in s.args[1:]:
                servers.append(s.args[0])
    elif "$" not in hostpart:
        servers.append(
            hostpart
            if re.search(r":\d+$", hostpart)
            else hostpart + (":443" if scheme == "https" else ":80")
        )
    return {
        "proxy_pass": target,
        "where": d.where,
        "scheme": scheme,
        "servers": servers,
        "upstream": upstream,
        "uri": upstream_uri,
    }


# --------------------------------------------------------------------------------------------
# Findings for one SSE location
# --------------------------------------------------------------------------------------------


def finding(fid: str, severity: str, message: str, where: str = "", **extra: Any) -> dict[str, Any]:
    assert severity in SEVERITIES, severity
    out = {
        "id": fid,
        "severity": severity,
        "component": fid.split(".", 1)[0],
        "message": message,
        "where": where,
    }
    out.update(extra)
    return out


def _header_value(eff: Effective, header: str) -> Directive | None:
    for d in eff.directives:
        if d.args and d.args[0].lower() == header.lower():
            return d
    return None


def _replaced_note(eff: Effective, what: str) -> str:
    if eff.replaced and eff.level != "default":
        outer = ", ".join(d.where for d in eff.replaced[:3])
        return (
            f" (the {eff.level} has {what} lines of its own at {eff.directives[0].where}, which"
            f" replace ALL of the outer level's: {outer})"
        )
    return ""


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
    loc = chain[-1]
    label = f"{path} ({loc.describe()} at {loc.directive.where})"
    found: list[dict[str, Any]] = []
    eff = {
        name: effective(levels, name)
        for name in (
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
    }
    settings: dict[str, Any] = {
        name: {"value": e.value, "where": e.where, "level": e.level}
        for name, e in eff.items()
        if name not in ("proxy_set_header", "add_header", "access_log", "proxy_ignore_headers")
    }

    target = proxy_target(config, loc, path)
    if not target:
        found.append(
            finding(
                "nginx.no_proxy_pass",
                "critical",
                f"{label} has no proxy_pass: nginx answers {path} itself instead of passing"
                " it to the backend",
                loc.directive.where,
                path=path,
            )
        )

    ignore = {a.lower() for d in eff["proxy_ignore_headers"].directives for a in d.args}
    ignores_accel = "x-accel-buffering" in ignore
    buffering = (eff["proxy_buffering"].value or "on").lower()
    settings["proxy_buffering"]["ignores_x_accel_buffering"] = ignores_accel
    if buffering == "on":
        origin = (
            f"proxy_buffering on at {eff['proxy_buffering'].where}"
            if not eff["proxy_buffering"].is_default
            else "proxy_buffering is on by default (no proxy_buffering off)"
        )
        if ignores_accel:
            ign = next(
                d
                for d in eff["proxy_ignore_headers"].directives
                if "x-accel-buffering" in [a.lower() for a in d.args]
            )
            found.append(
                finding(
                    "nginx.proxy_buffering",
                    "critical",
                    f"nginx buffers the stream for {label}: {origin}, and proxy_ignore_headers"
                    f" X-Accel-Buffering at {ign.where} makes it ignore the backend's"
                    " 'X-Accel-Buffering: no'; keepalives sit in nginx's buffer and never reach the"
                    " client, which gives up (499)",
                    eff["proxy_buffering"].where
                    if not eff["proxy_buffering"].is_default
                    else ign.where,
                    path=path,
                    also=[ign.where],
                )
            )
        else:
            found.append(
                finding(
                    "nginx.proxy_buffering",
                    "warning",
                    f"{origin} for {label}: the stream is unbuffered only while the backend sends"
                    " 'X-Accel-Buffering: no' (set proxy_buffering off for the SSE location)",
                    eff["proxy_buffering"].where
                    if not eff["proxy_buffering"].is_default
                    else loc.directive.where,
                    path=path,
                    needs_backend_header=True,
                )
            )

    cache = eff["proxy_cache"].value
    if cache and cache.lower() != "off":
        found.append(
            finding(
                "nginx.proxy_cache",
                "critical",
                f"proxy_cache {cache} at {eff['proxy_cache'].where} caches {label}: a cached"
                " response"
                " is only passed on complete, and an event stream never completes",
                eff["proxy_cache"].where,
                path=path,
            )
        )

    read = nginx_seconds(eff["proxy_read_timeout"].value or "60s")
    read_where = eff["proxy_read_timeout"].where
    read_origin = "proxy_read_timeout " + (eff["proxy_read_timeout"].value or "60s (nginx default)")
    if read is not None and read <= keepalive_interval:
        found.append(
            finding(
                "nginx.proxy_read_timeout",
                "critical",
                f"{read_origin} at {read_where} for {label} is not longer than the backend's"
                " keepalive"
                f" interval ({_secs(keepalive_interval)}): nginx closes a healthy idle stream after"
                f" {_secs(read)} without a byte",
                read_where,
                path=path,
                seconds=read,
            )
        )
    elif read is not None and read < 2 * keepalive_interval:
        found.append(
            finding(
                "nginx.proxy_read_timeout",
                "warning",
                f"{read_origin} at {read_where} for {label} leaves little slack over the keepalive"
                f" interval ({_secs(keepalive_interval)}): one late keepalive and nginx closes"
                " the stream",
                read_where,
                path=path,
                seconds=read,
            )
        )

    for name, what in (
        ("proxy_send_timeout", "between two writes of the request to the backend"),
        ("send_timeout", "between two writes to a client that does not read"),
    ):
        value = nginx_seconds(eff[name].value or "60s")
        if value is not None and value <= keepalive_interval:
            found.append(
                finding(
                    f"nginx.{name}",
                    "warning",
                    f"{name} {eff[name].value or '60s (nginx default)'} at {eff[name].where}"
                    f" for {label}"
                    f" is not longer than the keepalive interval ({_secs(keepalive_interval)}); it"
                    f" applies {what}, not to an idle stream, but is best above it",
                    eff[name].where,
                    path=path,
                    seconds=value,
                )
            )

    gzip_on = (eff["gzip"].value or "off").lower() == "on"
    gzip_types = " ".join(" ".join(d.args) for d in eff["gzip_types"].directives).split()
    if gzip_on:
        if "text/event-stream" in gzip_types or "*" in gzip_types:
            found.append(
                finding(
                    "nginx.gzip",
                    "warning",
                    f"gzip on at {eff['gzip'].where} compresses {label} (gzip_types at"
                    f" {eff['gzip_types'].where} includes text/event-stream): events wait in the"
                    " compressor until a flush; set gzip off for the SSE location",
                    eff["gzip"].where,
                    path=path,
                )
            )
        else:
            found.append(
                finding(
                    "nginx.gzip",
                    "info",
                    f"gzip on at {eff['gzip'].where} for {label}, but text/event-stream is not in"
                    " gzip_types: streams are not compressed",
                    eff["gzip"].where,
                    path=path,
                )
            )

    version = eff["proxy_http_version"].value or "1.0"
    if version != "1.1":
        found.append(
            finding(
                "nginx.proxy_http_version",
                "warning",
                f"proxy_http_version {version}"
                f"{' (nginx default)' if eff['proxy_http_version'].is_default else ''} at"
                f" {eff['proxy_http_version'].where} for {label}: HTTP/1.0 to the backend, no"
                " chunked"
                " streaming; set proxy_http_version 1.1",
                eff["proxy_http_version"].where
                if not eff["proxy_http_version"].is_default
                else loc.directive.where,
                path=path,
            )
        )

    headers = eff["proxy_set_header"]
    conn = _header_value(headers, "Connection")
    settings["proxy_set_header"] = {
        "level": headers.level,
        "headers": [
            {"value": " ".join(_quote(a) for a in d.args), "where": d.where}
            for d in headers.directives
        ],
        "replaced": [d.where for d in headers.replaced],
    }
    if conn is None:
        outer_conn = next(
            (d for d in headers.replaced if d.args and d.args[0].lower() == "connection"), None
        )
        note = (
            f" (proxy_set_header Connection at {outer_conn.where} is not inherited:"
            f" the {headers.level}'s own proxy_set_header lines at"
            f" {headers.directives[0].where} replace ALL of the outer level's)"
            if outer_conn is not None and headers.directives
            else ""
        )
        found.append(
            finding(
                "nginx.connection_header",
                "warning",
                f"nginx sends 'Connection: close' to the backend for {label}{note}; set"
                " proxy_set_header Connection '' with proxy_http_version 1.1",
                headers.where if headers.directives else loc.directive.where,
                path=path,
            )
        )
    settings["connection_header"] = {
        "value": " ".join(_quote(a) for a in conn.args[1:])
        if conn is not None
        else "close (nginx default)",
        "where": conn.where if conn is not None else "nginx default",
    }

    adds = eff["add_header"]
    accel = _header_value(adds, "X-Accel-Buffering")
    settings["add_header"] = {
        "level": adds.level,
        "headers": [
            {"value": " ".join(_quote(a) for a in d.args), "where": d.where}
            for d in adds.directives
        ],
        "replaced": [d.where for d in adds.replaced],
    }
    if accel is None or (len(accel.args) > 1 and accel.args[1].lower() != "no"):
        outer = next(
            (d for d in adds.replaced if d.args and d.args[0].lower() == "x-accel-buffering"), None
        )
        note = (
            f" (add_header X-Accel-Buffering at {outer.where} is not inherited: the"
            f" {adds.level}'s own add_header lines at {adds.directives[0].where} replace ALL"
            " of the outer level's)"
            if outer is not None and adds.directives
            else ""
        )
        found.append(
            finding(
                "nginx.x_accel_buffering",
                "warning",
                f"no 'add_header X-Accel-Buffering no' in effect for {label}{note}: nginx does not"
                " pass the backend's X-Accel-* headers on, so a proxy in front of this one may"
                " buffer the stream",
                accel.where if accel is not None else loc.directive.where,
                path=path,
            )
        )
    settings["x_accel_buffering"] = {
        "value": " ".join(accel.args[1:]) if accel is not None else None,
        "where": accel.where if accel is not None else None,
    }
    settings["proxy_ignore_headers"] = {
        "value": sorted(ignore),
        "where": [d.where for d in eff["proxy_ignore_headers"].directives],
    }
    settings["access_log"] = {
        "value": [" ".join(d.args) for d in eff["access_log"].directives],
        "where": [d.where for d in eff["access_log"].directives],
    }
    settings["proxy_read_timeout"]["seconds"] = read
    return {"settings": settings, "target": target}, found


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
