"""Filters for values written to a systemd EnvironmentFile= (one KEY="value" a line).

systemd's parser (src/basic/env-file.c, parse_env_file_internal) reads a double-quoted
value literally except for a backslash, which escapes the next character: `\\"`, `\\\\`,
`\\$` and `` \\` `` give the character itself (any other escaped character keeps its
backslash, and a backslash before a newline joins two lines). Outside quotes it strips
whitespace around the value and drops every backslash. So every value is written in
double quotes with exactly those four characters escaped: spaces, `#`, `;`, `'`, `%`, tab
and non-ASCII text need nothing more and arrive byte for byte (checked in systemd 252 and
257 by reading /proc/<pid>/environ of a unit; tests/unit/test_systemd_env_filter.py keeps
those cases). `to_json`, written here before, turned `café` into `caf\\u00e9` and a tab
into `\\t`: systemd knows neither escape and keeps them as they are.

Control characters but tab are refused. systemd would keep even a newline inside double
quotes, but a newline is how a publish token (then written unquoted) once injected a second
variable: one assignment per line keeps the file readable by line-based tools (grep, diff)
and makes an injection impossible by construction.

    KEY={{ value | sse.stack.systemd_env_quote('sse_backend_env.KEY') }}
    {{ sse_backend_env | sse.stack.systemd_env_problems('sse_backend_env.') }}  -> [] when fine

Neither ever puts the value in a message: environment values are often secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - only for use without Ansible installed

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        pass


# what systemd's double-quote state treats as an escape (SHELL_NEED_ESCAPE)
_ESCAPE = re.compile(r'(["\\`$])')
# C0 controls but tab, and DEL (see the module docstring)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte"}


def _kind(value: object) -> str:
    """What a value is, in words (Ansible hands over tagged subclasses: _AnsibleTaggedDict)."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _problem(value: object) -> str:
    """Why `value` cannot be written to an environment file ("" when it can)."""
    if not isinstance(value, (str, int, float)):  # bool is an int
        return f"must be a string, a number or a boolean, got {_kind(value)}"
    found = _CONTROL.search(str(value))
    if found is None:
        return ""
    char = found.group()
    what = _CONTROL_NAMES.get(char, f"the control character U+{ord(char):04X}")
    return f"holds {what}; an environment value may hold no control character but tab"


def systemd_env_problems(values: object, prefix: str = "") -> list[str]:
    """For a mapping of name -> value: one "<prefix><name> why" for each value that cannot
    be written, so a message names the variable (prefix "sse_backend_env." for the keys of
    that dict)."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(
            f"systemd_env_problems expects a mapping, got a {type(values).__name__}"
        )
    problems = ((str(name), _problem(value)) for name, value in values.items())
    return [f"{prefix}{name} {why}" for name, why in problems if why]


def systemd_env_quote(value: object, name: str = "value") -> str:
    """`value` as a double-quoted EnvironmentFile= value that systemd reads back exactly."""
    why = _problem(value)
    if why:
        raise AnsibleFilterError(f"{name} {why}")
    if isinstance(value, bool):  # as Jinja's `string` filter writes it
        value = str(value)
    return '"' + _ESCAPE.sub(r"\\\1", str(value)) + '"'


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "systemd_env_quote": systemd_env_quote,
            "systemd_env_problems": systemd_env_problems,
        }
