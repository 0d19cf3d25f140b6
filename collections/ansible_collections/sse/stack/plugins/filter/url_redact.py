"""Filters that keep a URL's credentials out of messages and files.

A package index URL may carry credentials in any of its parts: `user:password@` (most
indexes), a token as the user name (`https://__token__:TOKEN@...`, `https://TOKEN@...`),
a token in the path (`https://dl.example.io/TOKEN/org/simple/`) or in the query. pip
itself hides only the password of `user:password@` when it prints a URL, so its output
can still hold the rest.

    {{ url | sse.stack.url_redact }}                 -> https://***@pypi.example:8443/***
    {{ text | sse.stack.url_redact_text(url) }}      -> text with every secret part of url as ***

`url_redact` keeps the scheme, the host and the port (enough to tell which index failed)
and replaces user information, path and query by `***`. `url_redact_text` replaces, in a
text (pip's output, an error message), the URL, its user information, user name,
password, path, query and every path segment that may be a token (8 characters or more),
both as written and percent-decoded, longest first. Parts shorter than 3 characters are
left (replacing them would garble the text, and they protect nothing).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MASK = "***"
# a path segment at least this long may be a token ("simple" is not, a token is longer)
TOKEN_SEGMENT = 8
SHORTEST_SECRET = 3


def _split(url: str):
    try:
        return urlsplit(str(url))
    except ValueError:  # e.g. an invalid IPv6 literal: nothing of it can be trusted
        return None


def url_redact(url: object) -> str:
    """The URL with its user information, path and query replaced by `***`."""
    parts = _split(str(url))
    if parts is None or not parts.scheme or not parts.hostname:
        return MASK if str(url) else ""
    host = parts.hostname
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    userinfo = f"{MASK}@" if "@" in parts.netloc else ""
    path = f"/{MASK}" if parts.path.strip("/") else parts.path
    query = f"?{MASK}" if parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{path}{query}"


def _secrets(url: str) -> list[str]:
    found = [url, url.rstrip("/")]
    parts = _split(url)
    if parts is not None:
        if "@" in parts.netloc:
            userinfo = parts.netloc.rsplit("@", 1)[0]
            found += [userinfo, *userinfo.split(":", 1)]
        found += [parts.query, parts.path.rstrip("/") if parts.path.strip("/") else ""]
        found += [seg for seg in parts.path.split("/") if len(seg) >= TOKEN_SEGMENT]
    found += [unquote(part) for part in found]
    unique = {part for part in found if len(part) >= SHORTEST_SECRET}
    return sorted(unique, key=len, reverse=True)


def url_redact_text(text: object, url: object) -> str:
    """`text` with every part of `url` that may be a secret replaced by `***`."""
    result = str(text)
    if not url:
        return result
    for secret in _secrets(str(url)):
        result = result.replace(secret, MASK)
    return result


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"url_redact": url_redact, "url_redact_text": url_redact_text}
