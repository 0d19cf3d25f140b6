"""The filter `sse_input_problems` (plugins/filter/nginx_input.py): strict types from an
argument spec, whole strings, and the forms of the nginx and verify inputs."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest

FILTERS = (
    Path(__file__).resolve().parents[2] / "collections/ansible_collections/sse/stack/plugins/filter"
)
# a package of its own, so the plugin's relative import of nginx_time works as in Ansible
_package = types.ModuleType("sse_stack_filters")
_package.__path__ = [str(FILTERS)]
sys.modules.setdefault("sse_stack_filters", _package)
nginx_input = importlib.import_module("sse_stack_filters.nginx_input")
problems = nginx_input.sse_input_problems
directive_problem = nginx_input.directive_problem

LOCATIONS = {
    "type": "list",
    "elements": "dict",
    "options": {
        "path": {"type": "str", "required": True},
        "read_timeout": {"type": "str"},
    },
}


def one(kind: str, value: Any, rule: str | None = None, **spec: Any) -> list[str]:
    rules = {"x": rule} if rule else {}
    return problems({"x": value}, {"x": {"type": kind, **spec}}, rules)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int", 5),
        ("int", "8443"),
        ("int", "-1"),  # a range check's job, not the type's
        ("float", 1.5),
        ("float", 30),
        ("float", "30.5"),
        ("float", ".5"),
        ("float", "1e3"),
        ("bool", True),
        ("bool", False),
        ("str", "x"),
        ("str", ""),
        ("path", "/a"),
        ("list", []),
        ("dict", {"a": 1}),
        ("raw", object()),
    ],
)
def test_types_accepted(kind: str, value: Any) -> None:
    assert one(kind, value) == []


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("int", "10s", 'x: expected a whole number, got "10s" (a string)'),
        ("int", "2y", "expected a whole number"),
        ("int", 1.0, "expected a whole number, got 1.0 (a number)"),
        ("int", True, "expected a whole number, got true (a boolean)"),
        ("int", "", "expected a whole number"),
        ("int", "5\n", "expected a whole number"),
        ("int", None, "got null (null)"),
        ("float", "30s", "expected a number"),
        ("float", "inf", "expected a number"),
        ("float", float("nan"), "expected a number"),
        ("float", False, "expected a number"),
        ("bool", "false", "true or false"),
        ("bool", "yes", "true or false"),
        ("bool", 0, "true or false"),
        ("str", 5, "expected a string, got 5 (an integer)"),
        ("str", True, "expected a string"),
        ("str", ["a"], 'got ["a"] (a list)'),
        ("list", "a,b", 'expected a list, got "a,b" (a string)'),
        ("list", {"path": "/a"}, "(a mapping)"),
        ("dict", ["a"], "expected a mapping"),
    ],
)
def test_types_refused_never_coerced(kind: str, value: Any, expected: str) -> None:
    (message,) = one(kind, value)
    assert message.startswith("x: ") and expected in message


def test_every_string_is_whole() -> None:
    for text in ("x\n", "a\tb", "a\rb", "a\x00b", "a\x85b", "a\u2028b"):
        (message,) = one("str", text)
        assert "control character" in message, text


def test_list_items_are_named_by_index() -> None:
    spec = {"type": "list", "elements": "str"}
    found = problems({"u": ["a:1", "b", 3]}, {"u": spec}, {"u": "upstream"})
    assert found == [
        'u[1]: "b" (a string) is not host:port with a port in 1..65535 (or unix:/path/to/socket)',
        "u[2]: expected a string, got 3 (an integer)",
    ]


def test_dict_items_keys() -> None:
    rules = {"l.path": "location_path", "l.read_timeout": "nginx_time_ms"}
    check = lambda value: problems({"l": value}, {"l": LOCATIONS}, rules)  # noqa: E731
    assert check([{"path": "/a", "read_timeout": 3600}, {"path": "/b"}]) == []
    assert check([{"pth": "/a"}]) == ["l[0]: unknown key pth (known: path, read_timeout)"]
    assert check([{"read_timeout": "1h"}]) == ["l[0]: path is required"]
    assert check(["/a"]) == ['l[0]: expected a mapping, got "/a" (a string)']
    assert check([{"path": "/a", "read_timeout": "1 h"}]) == [
        'l[0].read_timeout: "1 h" (a string) is not a valid nginx time '
        "(unexpected ' ' at position 1)"
    ]
    assert check([{"path": "/a", "read_timeout": 1.5}]) == [
        "l[0].read_timeout: expected a string, got 1.5 (a number)"
    ]


def test_unknown_variable_and_unknown_rule() -> None:
    assert problems({"y": 1}, {}) == ["y: not an input of this role (no argument spec for it)"]
    with pytest.raises(ValueError, match="unknown rule"):
        problems({"x": "a"}, {"x": {"type": "str"}}, {"x": "no_such_rule"})


def test_choices() -> None:
    assert one("str", "b", choices=["a", "b"]) == []
    assert one("str", "c", choices=["a", "b"]) == ['x: expected one of a, b, got "c" (a string)']


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        ("name", ["sse", "a.b-c_d", "1x"], ["", "../etc", "a/b", "a..b", ".x", "a b"]),
        (
            "host_name",
            ["localhost", "sse.example.com", "*.example.com", "_", "127.0.0.1"],
            ["", "a b", "a;b", "a..b", "-x", "a{b"],
        ),
        (
            "abs_file",
            ["/var/log/nginx/sse_access.log", "/a"],
            ["", "a.log", "/a b", "/a;", "/a{", "/a/../b", "/a/./b", "/a/", "/a#b", "/$x", "/a'b"],
        ),
        ("abs_file_or_empty", ["", "/a"], ["a"]),
        (
            "location_path",
            ["/notify/events", "/a.b/c-d_e~f", "/v1:stream"],
            ["", "/", "a", "/a b", "/a;", "/a{", "/a}", "/a/../b", "/a#", "/$a", "~ ^/a"],
        ),
        (
            "upstream",
            [
                "127.0.0.1:8000",
                "[::1]:8000",
                "[fe80::1]:1",
                "backend-2.example.com:65535",
                "b:1",
                "unix:/run/sse/backend.sock",
            ],
            [
                "127.0.0.1",
                "b:0",
                "b:65536",
                ":80",
                "a b:80",
                "a:80;",
                "a..b:80",
                "unix:",
                "unix:run.sock",
                "unix:/run/../x.sock",
                "unix:/a b",
                "[::1]",
                "::1:80",
            ],
        ),
        (
            "url",
            ["https://localhost/notify/events", "http://[::1]:8080/e", "https://a.b:8443"],
            [
                "",
                "ftp://x",
                "not a url",
                "https://",
                "https://u:p@h/",
                "https://h:0/",
                "https://h:x/",
            ],
        ),
        ("url_or_empty", ["", "http://a/"], ["a"]),
        (
            "resolve_or_empty",
            ["", "localhost:443:127.0.0.1", "a.b:8443:[::1]"],
            ["localhost:443", "a:0:1.2.3.4", "a:443:", ":443:1.2.3.4", "a:99999:1.2.3.4"],
        ),
        ("nginx_time_ms", ["1h", "30", "500ms", "1h30m"], ["1 hour", "1M", "1y", "", "1x"]),
    ],
)
def test_rules(rule: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert one("str", value, rule) == [], value
    for value in bad:
        (message,) = one("str", value, rule)
        assert message.startswith("x: "), value


@pytest.mark.parametrize(
    "path",
    ["/var/lib/sse-nginx/staging", "/var/lib/nginx-staging", "/srv/sse/staging", "/run/sse-nginx"],
)
def test_staging_folder_of_its_own(path: str) -> None:
    assert one("str", path, "nginx_staging_dir") == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/", "folder of the system"),
        ("/var/lib", "folder of the system"),
        ("/var/lib/", "folder of the system"),
        ("/tmp", "folder of the system"),
        ("/home", "folder of the system"),
        ("/srv", "folder of the system"),
        ("/var/lib/nginx", "folder of the system"),
        ("/etc", "folder of the system"),
        ("/var", "folder of the system"),
        ("/usr", "folder of the system"),
        ("/proc/x", "folder of the system"),
        ("/etc/nginx", "outside /etc/nginx"),
        ("/etc/nginx/staging", "outside /etc/nginx"),
        ("/var/lib/sse/", "must not end with '/'"),
        ("staging", "absolute folder"),
        ("/var//lib/x", "absolute folder"),
        ("/var/lib/x/../..", "absolute folder"),
        ("/a b", "absolute folder"),
    ],
)
def test_staging_folder_refused(path: str, why: str) -> None:
    (message,) = one("str", path, "nginx_staging_dir")
    assert why in message


@pytest.mark.parametrize(
    "text",
    [
        "proxy_buffering on;",
        "  gzip off;  ",
        "client_max_body_size 1m;",
        "add_header X-Frame-Options DENY always;",
        # inside quotes ; { } # are text, as nginx reads them
        "add_header Content-Security-Policy \"default-src 'self'; frame-ancestors 'none'\" always;",
        "add_header X-A '{ }' always;",
        'add_header X-A "a\\"b";',
        "add_header X-A a#b;",  # '#' inside a word is text too
        "return 301 https://$host$request_uri;",
        "if_modified_since off;",
    ],
)
def test_directive_accepted(text: str) -> None:
    assert directive_problem(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must end with ';'"),
        ("gzip off", "must end with ';'"),
        (";", "is empty"),
        ("gzip off; gzip_vary on;", "more than one directive"),
        ("proxy_buffering on; } server { listen 8080;", "more than one directive"),
        ("}", "'}' outside quotes"),
        ("location /x { return 200; }", "'{' outside quotes"),
        ("set $a ${b};", "'{' outside quotes"),
        ("# gzip off;", "'#' outside quotes"),
        ("gzip #off;", "'#' outside quotes"),
        ('add_header X "a;', "not closed"),
        ('add_header X "a"b;', "space or ';' after a quoted"),
        ('add_header X a"b";', "quote inside a word"),
        ("Gzip off;", "directive name"),
        ("'gzip' off;", "directive name"),
        ("listen 8080;", "writes itself"),
        ("server_name evil;", "writes itself"),
        ("ssl_certificate /x.crt;", "writes itself"),
        ("access_log off;", "writes itself"),
    ],
)
def test_directive_refused(text: str, why: str) -> None:
    problem = directive_problem(text)
    assert problem is not None and why in problem


def test_directive_messages_name_the_item() -> None:
    spec = {"d": {"type": "list", "elements": "str"}}
    found = problems({"d": ["gzip off;", "gzip on; }"]}, spec, {"d": "nginx_directive"})
    assert len(found) == 1 and found[0].startswith('d[1]: "gzip on; }" (a string) holds more')


def test_long_values_are_cut_in_messages() -> None:
    (message,) = one("int", "9" * 200 + "s")
    assert len(message) < 160 and "..." in message


def test_registered_as_filter() -> None:
    assert nginx_input.FilterModule().filters() == {"sse_input_problems": problems}
