"""Which nginx location serves a request URI, chosen exactly as nginx chooses it (stdlib only).

``match_location(server, uri)`` follows ngx_http_core_find_location and
ngx_http_core_find_static_location, level by level (the server block, then the nested
locations of the location chosen so far):

1. static locations (prefix, ``^~`` and ``=``): an ``=`` location named exactly the URI ends
   the whole search; else the longest prefix location the URI starts with is remembered. A
   prefix location named exactly the URI is only the longest prefix: it does NOT end the
   search. If no location is named exactly the URI but one named URI + "/" proxies
   (``proxy_pass``, ``fastcgi_pass``, ... directly in it), nginx answers 301 to URI + "/"
   (its "auto redirect") and the search ends;
2. the remembered prefix's nested locations are searched the same way; a nested ``=`` or a
   nested regular expression that matches ends the search;
3. unless the prefix remembered at THIS level is ``^~``, this level's regular expressions
   (``~`` case-sensitive, ``~*`` not) are tried in the order they appear; the first that
   matches serves the request, after its own nested locations are searched. A nested ``^~``
   stops only the nested level's regular expressions, not the outer ones;
4. else the remembered prefix (or the nested location found in 2) serves it.

Named locations (``@name``) never match a request URI.

Reusable on its own (e.g. to refuse an SSE path that another location shadows): it needs
only the ``Directive`` tree of ``sse_diagnose_nginx_parse``.
No Ansible imports: shipped as the collection module_utils ``sse_diagnose_nginx_match``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import (
    Directive,
)

__all__ = ["Location", "Match", "find_location", "match_location"]

# directives that make a location whose name ends with "/" redirect URI -> URI/ (auto_redirect)
PASS_DIRECTIVES = {
    "proxy_pass",
    "fastcgi_pass",
    "uwsgi_pass",
    "scgi_pass",
    "memcached_pass",
    "grpc_pass",
}
_MODIFIERS = {"=": "exact", "^~": "noregex", "~": "regex", "~*": "iregex"}


@dataclass
class Location:
    directive: Directive
    kind: str  # exact | prefix | noregex | regex | iregex | named
    name: str

    @classmethod
    def of(cls, d: Directive) -> Location:
        args = d.args
        if len(args) >= 2:
            return cls(d, _MODIFIERS.get(args[0], "prefix"), args[1])
        name = args[0] if args else ""
        if name.startswith("@"):
            return cls(d, "named", name)
        # the modifier written together with the name ("=/x", "~*\.css$"), longest first
        for mod in ("^~", "~*", "=", "~"):
            if name.startswith(mod):
                return cls(d, _MODIFIERS[mod], name[len(mod) :])
        return cls(d, "prefix", name)

    @property
    def static(self) -> bool:
        return self.kind in ("exact", "prefix", "noregex")

    @property
    def auto_redirect(self) -> bool:
        """nginx redirects name-without-slash to this location (ngx_http_proxy_pass & co)."""
        return (
            self.static
            and self.name.endswith("/")
            and any(d.name in PASS_DIRECTIVES for d in self.directive.block or [])
        )

    def regex(self) -> re.Pattern[str]:
        # PCRE named groups (?<name>...) are (?P<name>...) in Python
        pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", self.name)
        return re.compile(pattern, re.IGNORECASE if self.kind == "iregex" else 0)

    def describe(self) -> str:
        mod = {"exact": "= ", "noregex": "^~ ", "regex": "~ ", "iregex": "~* "}.get(self.kind, "")
        return f"location {mod}{self.name}"


@dataclass
class Match:
    """The location chain (outermost first) that serves a URI; [] when none does."""

    chain: list[Location] = field(default_factory=list)
    # nginx answers 301 to URI + "/" (auto redirect of the chain's last location)
    redirect: bool = False

    @property
    def location(self) -> Location | None:
        return self.chain[-1] if self.chain else None


# return codes of ngx_http_core_find_location / ngx_http_core_find_static_location
_OK, _AGAIN, _DECLINED, _DONE = "ok", "again", "declined", "done"


def _static(uri: str, static: list[Location]) -> tuple[str, Location | None]:
    """ngx_http_core_find_static_location over one level's static locations."""
    exact = next((loc for loc in static if loc.kind == "exact" and loc.name == uri), None)
    if exact is not None:
        return _OK, exact
    named_as_uri = next((loc for loc in static if loc.kind != "exact" and loc.name == uri), None)
    if named_as_uri is not None:
        return _AGAIN, named_as_uri
    redirect = next((loc for loc in static if loc.auto_redirect and loc.name == uri + "/"), None)
    if redirect is not None:
        return _DONE, redirect
    inclusive = [loc for loc in static if loc.kind != "exact" and uri.startswith(loc.name)]
    if inclusive:
        return _AGAIN, max(inclusive, key=lambda loc: len(loc.name))
    return _DECLINED, None


def _first_regex(uri: str, regexes: list[Location], errors: list[str]) -> Location | None:
    for loc in regexes:
        try:
            if loc.regex().search(uri) is not None:
                return loc
        except re.error as exc:  # PCRE syntax Python lacks: say so, go on as if no match
            errors.append(f"{loc.directive.where}: cannot evaluate {loc.describe()}: {exc}")
    return None


def _find(uri: str, container: list[Directive], errors: list[str]) -> tuple[str, list[Location]]:
    locations = [Location.of(d) for d in container if d.name == "location" and d.block is not None]
    rc, found = _static(uri, [loc for loc in locations if loc.static])
    chain = [found] if found is not None else []
    noregex = False
    if rc == _AGAIN and found is not None:
        noregex = found.kind == "noregex"
        rc, nested = _find(uri, found.directive.block or [], errors)
        chain += nested
    if rc in (_OK, _DONE):
        return rc, chain
    if not noregex:
        regexes = [loc for loc in locations if loc.kind in ("regex", "iregex")]
        regex = _first_regex(uri, regexes, errors)
        if regex is not None:
            _, nested = _find(uri, regex.directive.block or [], errors)
            return _OK, [regex, *nested]
    return rc, chain


def match_location(server: Directive, uri: str, errors: list[str] | None = None) -> Match:
    """How nginx serves ``uri`` in ``server`` (``errors`` collects regexes Python cannot run)."""
    rc, chain = _find(uri, server.block or [], errors if errors is not None else [])
    return Match(chain, rc == _DONE)


def find_location(server: Directive, uri: str, errors: list[str] | None = None) -> list[Location]:
    """The location chain (outermost first) that serves ``uri`` in ``server``; [] if none.

    With an auto redirect (see ``match_location``) it is the redirecting location's chain.
    """
    return match_location(server, uri, errors).chain
