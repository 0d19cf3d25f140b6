"""Filter `sse_input_problems`: what is wrong with a role's inputs, one message per variable.

    "{{ values | sse.stack.sse_input_problems(options, rules) }}"  -> ["name: why", ...]

`values` maps variable names to their values; `options` is the role's argument-spec
options for them (meta/argument_specs.yml), `rules` maps a name to the form its value must
have (below). An empty list means every value is fine. It never raises on bad input:
preflight asserts the list is empty and prints it, so each refusal is one message naming
the variable (the item `name[2]`, the key `name[2].path`), never a Jinja error.

Types come from the argument spec, checked strictly because a preflight run outside the
role's entry points (site.yml's first play) gets no argument validation, and Jinja's
`| int` would turn "10s" into 0: int is a whole number or a string of digits; float a
finite number or its decimal string; bool a real true/false (the string "false" is true
in a `when:`); str a string (a whole number too for an nginx time); a list is never a string
(Ansible would split "a,b"); a dict in a list takes only its documented keys.

Every string must hold no control character (no newline: one line in a config file), and
is matched whole (a regex `$` would let a trailing newline through). The rules:

- `name`: letters, digits, `_`, `.`, `-`; starts with a letter or digit; no `..` (it names
  files);
- `host_name`: one host name for `server_name` (`*` and `_` allowed); no `..`;
- `abs_file`, `abs_file_or_empty`: an absolute file path that nginx reads unquoted (no
  spaces, quotes, `;`, `{`, `}`, `#`, `$`, `\\`, no `.`/`..` component, no trailing `/`);
- `location_path`: an SSE location prefix: URL path characters, starts with `/`, not `/`
  itself (the role's catch-all), no `..` component;
- `upstream`: `host:port`, `[ipv6]:port` (port 1..65535) or `unix:/absolute/path`;
- `nginx_time_ms`: an nginx time of a millisecond-resolution directive (nginx_time.py);
- `nginx_directive`: one simple nginx directive ending with `;`, see `directive_problem`;
- `nginx_staging_dir`: an absolute folder the role may empty and refill: not a system
  folder, not /etc/nginx, inside it or above it;
- `url`, `url_or_empty`: http(s)://host[:port][/path], no whitespace, no credentials;
- `resolve_or_empty`: curl's `HOST:PORT:ADDR` (port 1..65535).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .nginx_time import nginx_time_problem

# Ansible's spec types and what this filter calls them in a message
_EXPECTED = {
    "str": "a string",
    "path": "a string (a path)",
    "raw": "any value",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false (a YAML/JSON boolean, not a string)",
    "list": "a list",
    "dict": "a mapping",
}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9*_][A-Za-z0-9*_.-]*")
# characters nginx reads as one unquoted word that means the same in every directive
_PATH = re.compile(r"/[A-Za-z0-9._~%/:@+,=!-]*")
_LOCATION = _PATH
_UPSTREAM_HOST = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?):([0-9]{1,5})"
)
_RESOLVE = re.compile(r"([^:\[\]\s]+):([0-9]{1,5}):(\[[0-9A-Fa-f:.]+\]|[^\s\[\]]+)")
# rules whose values YAML may read as a whole number (30: thirty seconds)
_NUMBERS_OK = frozenset({"nginx_time_ms"})
_DIRECTIVE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Directives the role writes itself: a second `listen` would serve the site outside the
# TLS server's ports (unencrypted), the others would clash with the role's values.
_ROLE_DIRECTIVES = {
    "listen": "sse_nginx_https_port",
    "server_name": "sse_nginx_server_name",
    "ssl_certificate": "sse_nginx_tls_cert",
    "ssl_certificate_key": "sse_nginx_tls_key",
    "access_log": "sse_nginx_access_log",
}
_CONF_DIR = "/etc/nginx"
# Folders of the system (and their ancestors): the role removes its staging folder on
# every run, and must never set their mode.
_SYSTEM_FOLDERS = frozenset(
    {
        *("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64"),
        *("/libx32", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/run/nginx"),
        *("/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local"),
        *("/usr/local/bin", "/usr/local/lib", "/usr/sbin", "/usr/share", "/usr/share/nginx"),
        *("/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/lib/nginx"),
        *("/var/local", "/var/lock", "/var/log", "/var/log/nginx", "/var/mail", "/var/opt"),
        *("/var/run", "/var/spool", "/var/tmp", "/var/www"),
    }
)
# inside these nothing is a folder of the role's own (kernel and device filesystems)
_SYSTEM_TREES = ("/proc/", "/sys/", "/dev/")


def _show(value: Any) -> str:
    """The value as JSON (a newline shows as \\n), cut short, and its kind."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # pragma: no cover - json.dumps(default=str) copes
        text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind = next((k for t, k in kinds.items() if isinstance(value, t)), None)
    if kind is None:
        if value is None:
            kind = "null"
        elif isinstance(value, Mapping):
            kind = "a mapping"
        elif isinstance(value, (list, tuple)):
            kind = "a list"
        else:
            kind = type(value).__name__
    return f"{text} ({kind})"


def _type_problem(value: Any, kind: str, whole_numbers: bool = False) -> str | None:
    """Why `value` is not of the spec type `kind` (None when it is); `whole_numbers`: a
    str may also be given as an int (an nginx time in seconds)."""
    if kind == "raw":
        return None
    ok = False
    if isinstance(value, bool):
        ok = kind == "bool"
    elif kind in ("str", "path"):
        ok = isinstance(value, str) or (whole_numbers and isinstance(value, int))
    elif kind == "int":
        ok = isinstance(value, int) or (isinstance(value, str) and bool(_INT.fullmatch(value)))
    elif kind == "float":
        if isinstance(value, (int, float)):
            ok = math.isfinite(value)
        elif isinstance(value, str) and _FLOAT.fullmatch(value):
            ok = math.isfinite(float(value))
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "dict":
        ok = isinstance(value, Mapping)
    if ok:
        return None
    return f"expected {_EXPECTED.get(kind, kind)}, got {_show(value)}"


def _check(name: str, value: Any, spec: Mapping[str, Any], rules: Mapping[str, str]) -> list[str]:
    """Problems of one value (and its items or keys) against its spec and rules."""
    kind = spec.get("type", "str")
    rule = rules.get(name.split("[")[0] + _suffix(name))
    why = _type_problem(value, kind, whole_numbers=rule in _NUMBERS_OK)
    if why is not None:
        return [f"{name}: {why}"]
    if "choices" in spec and value not in spec["choices"]:
        choices = ", ".join(map(str, spec["choices"]))
        return [f"{name}: expected one of {choices}, got {_show(value)}"]
    if kind == "list":
        return _check_items(name, value, spec, rules)
    if kind in ("str", "path") and not isinstance(value, str):
        value = str(value)
    if isinstance(value, str):
        if _CONTROL.search(value):
            return [f"{name}: {_show(value)} holds a control character (newline, tab, ...)"]
        if rule:
            why = RULES[rule](value)
            if why:
                return [f"{name}: {_show(value)} {why}"]
    return []


def _suffix(name: str) -> str:
    """`x[1].path` -> `.path`: rules are keyed by the variable and the key, not the index."""
    tail = name.rsplit("]", 1)
    return tail[1] if len(tail) == 2 else ""


def _check_items(name: str, value: list, spec: Mapping[str, Any], rules: Mapping[str, str]):
    problems: list[str] = []
    elements = spec.get("elements", "raw")
    options = spec.get("options")
    for index, item in enumerate(value):
        label = f"{name}[{index}]"
        if elements == "dict" and options is not None:
            problems += _check_keys(label, item, options, rules)
        else:
            problems += _check(label, item, {"type": elements}, rules)
    return problems


def _check_keys(label: str, item: Any, options: Mapping[str, Any], rules: Mapping[str, str]):
    why = _type_problem(item, "dict")
    if why is not None:
        return [f"{label}: {why}"]
    unknown = sorted(str(key) for key in item if key not in options)
    if unknown:
        known = ", ".join(options)
        return [f"{label}: unknown key {', '.join(unknown)} (known: {known})"]
    problems = [
        f"{label}: {key} is required"
        for key, sub in options.items()
        if sub.get("required") and key not in item
    ]
    for key, sub in options.items():
        if key in item:
            problems += _check(f"{label}.{key}", item[key], sub, rules)
    return problems


def _dot_components(path: str) -> str | None:
    parts = path.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        return "has a '.' or '..' component"
    return None


def _name(value: str) -> str | None:
    if not _NAME.fullmatch(value) or ".." in value:
        return (
            "must be letters, digits, '_', '.', '-', starting with a letter or digit "
            "(it names files)"
        )
    return None


def _host_name(value: str) -> str | None:
    if not _HOST_NAME.fullmatch(value) or ".." in value:
        return "must be one host name (letters, digits, '.', '-', '_', '*')"
    return None


def _abs_file(value: str) -> str | None:
    if not _PATH.fullmatch(value) or value.endswith("/"):
        return (
            "must be an absolute file path of letters, digits and ._~%/:@+,=!- "
            "(no spaces, quotes, ';', '{', '}', '#', '$')"
        )
    return _dot_components(value)


def _location_path(value: str) -> str | None:
    if not _LOCATION.fullmatch(value):
        return (
            "must start with '/' and hold URL path characters only "
            "(letters, digits, ._~%/:@+,=!-; no spaces, quotes, ';', '{', '}', '#', '$')"
        )
    if value == "/":
        return "is the role's own catch-all location (location /)"
    return _dot_components(value)


def _upstream(value: str) -> str | None:
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if _PATH.fullmatch(path) and not path.endswith("/") and not _dot_components(path):
            return None
        return "is not unix:/absolute/socket/path (no spaces, quotes, ';', '{', '}', '..')"
    match = _UPSTREAM_HOST.fullmatch(value)
    if match is None or not 1 <= int(match.group(3)) <= 65535:
        return "is not host:port with a port in 1..65535 (or unix:/path/to/socket)"
    return None


def _url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if " " in value or "@" in parts.netloc or port == 0:
        return "must be an http(s) URL without spaces or credentials, with a port in 1..65535"
    return None


def _resolve(value: str) -> str | None:
    match = _RESOLVE.fullmatch(value)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        return "must be HOST:PORT:ADDR (curl's --resolve), with a port in 1..65535"
    return None


def _nginx_staging_dir(value: str) -> str | None:
    if not _PATH.fullmatch(value) or _dot_components(value) or "//" in value:
        return "must be an absolute folder path without '.', '..', '//', spaces or quotes"
    folder = value.rstrip("/") or "/"
    if folder in _SYSTEM_FOLDERS or folder.startswith(_SYSTEM_TREES):
        return (
            "is a folder of the system; the role empties and refills this folder on every "
            "run, so it must be one of its own (such as /var/lib/sse-nginx/staging)"
        )
    if (
        folder == _CONF_DIR
        or f"{folder}/".startswith(f"{_CONF_DIR}/")
        or _CONF_DIR.startswith(f"{folder}/")
    ):
        return f"must be a folder outside {_CONF_DIR} (the staging copy of it)"
    if value.endswith("/"):
        return "must not end with '/' (the role creates the folder before the last '/')"
    return None


def _or_empty(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
    return lambda value: None if value == "" else check(value)


def directive_problem(text: str) -> str | None:
    """Why `text` is not one simple nginx directive (None when it is).

    Read the way nginx's tokenizer (ngx_conf_read_token) reads it: words separated by
    spaces, quoted with "..." or '...', a backslash escapes the next character; `;` ends
    the directive, `{` would open a block, `}` close the server, and `#` at the start of
    a word comments out the rest of the line. Inside quotes all of them are plain text.
    """
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos == len(text):
            return "must end with ';'"
        char = text[pos]
        if char == ";":
            break
        if char in "{}" or (char == "#"):
            return _structure(char)
        end, why = _word_end(text, pos)
        if why:
            return why
        words.append(text[pos:end])
        pos = end
    if not words:
        return "is empty (one directive such as 'proxy_buffering on;')"
    if text[pos + 1 :].strip(" "):
        return "holds more than one directive (one directive per item, ending with ';')"
    if not _DIRECTIVE_NAME.fullmatch(words[0]):
        return f"does not start with a directive name ({words[0]!r})"
    if words[0] in _ROLE_DIRECTIVES:
        return f"sets {words[0]}, which the role writes itself (from {_ROLE_DIRECTIVES[words[0]]})"
    return None


def _structure(char: str) -> str:
    if char == "#":
        return "has '#' outside quotes, which would comment out the rest of the line"
    return (
        f"has '{char}' outside quotes: blocks are not allowed here, only simple directives "
        "(quote the argument if it holds a brace)"
    )


def _word_end(text: str, pos: int) -> tuple[int, str | None]:
    """End of the word at `pos` (after its closing quote), or why it is not a word."""
    if text[pos] in "\"'":
        quote, end = text[pos], pos + 1
        while end < len(text) and text[end] != quote:
            end += 2 if text[end] == "\\" else 1
        if end >= len(text):
            return end, "has a quote that is not closed"
        end += 1
        if end < len(text) and text[end] not in " ;":
            return end, "needs a space or ';' after a quoted argument"
        return end, None
    end = pos
    while end < len(text) and text[end] not in " ;":
        char = text[end]
        if char in "{}":
            return end, _structure(char)
        if char in "\"'":
            return end, "has a quote inside a word (quote the whole argument)"
        end += 2 if char == "\\" else 1
    return min(end, len(text)), None


RULES: dict[str, Callable[[str], str | None]] = {
    "name": _name,
    "host_name": _host_name,
    "abs_file": _abs_file,
    "abs_file_or_empty": _or_empty(_abs_file),
    "location_path": _location_path,
    "upstream": _upstream,
    "nginx_directive": directive_problem,
    "nginx_time_ms": lambda value: nginx_time_problem(value, "ms"),
    "nginx_staging_dir": _nginx_staging_dir,
    "url": _url,
    "url_or_empty": _or_empty(_url),
    "resolve_or_empty": _or_empty(_resolve),
}


def sse_input_problems(
    values: Mapping[str, Any],
    options: Mapping[str, Any],
    rules: Mapping[str, str] | None = None,
) -> list[str]:
    """One message per variable (or item) of `values` that its spec or rule refuses."""
    rules = dict(rules or {})
    unknown = sorted(set(rules.values()) - set(RULES))
    if unknown:
        raise ValueError(f"sse_input_problems: unknown rule(s) {unknown}; known: {sorted(RULES)}")
    problems: list[str] = []
    for name, value in values.items():
        if name not in options:
            problems.append(f"{name}: not an input of this role (no argument spec for it)")
            continue
        problems += _check(name, value, options[name], rules)
    return problems


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"sse_input_problems": sse_input_problems}
