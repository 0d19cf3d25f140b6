"""Bad input to sse_nginx is refused before any module runs on a host, naming the variable.

Each case is a tripwired host (tripwire.py: its interpreter records and fails any module
run) named after the case, with the case's variables as its host variables; one
ansible-playbook run per way the role is used (through site.yml, one run per case, with
the variables as extra vars):

- `preflight`: `tasks_from: preflight`, as site.yml's first play runs it, where no
  argument spec applies: the preflight alone must refuse wrong types ("10s" for a number
  is not 0);
- `main`: the role as a whole (argument spec first, then preflight);
- `upstreams`: the entry point a rolling release drains a backend with;
- `site`: site.yml itself, on one host that is backend and proxy.

A bad case passes when the run fails in the role's preflight (or argument validation),
every failure message names the variable (and holds the `also` texts), and no module ran
on the host. The valid cases (unusual but sane input) pass every check: through `main`
the first module run ("Install nginx") is where the tripwire stops them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tripwire import Case, Played, assert_case, batch_runner, start_runs

ROLE = "sse_nginx"
PREFLIGHT = ("roles/sse_nginx/tasks/preflight",)  # preflight.yml, preflight_*.yml
# valid input through these entry points is stopped by the tripwire at this task
FIRST_HOST_TASKS = {"main": "Install nginx", "upstreams": "Look for the role's live upstream file"}
LOC = {"path": "/notify/events", "read_timeout": "1h", "send_timeout": "1h"}


def bad(
    case_id: str, variables: dict[str, Any], names: str, *also: str, entry: str = "preflight"
) -> Case:
    return Case(case_id, variables, names, entry, also)


def directive(case_id: str, text: str, why: str) -> Case:
    return bad(
        case_id, {"sse_nginx_extra_directives": [text]}, "sse_nginx_extra_directives[0]", why
    )


def staging(case_id: str, path: str, why: str) -> Case:
    return bad(case_id, {"sse_nginx_staging_dir": path}, "sse_nginx_staging_dir", why)


# A certificate pair on the controller for the cases that need one (the fixture `tls_pair`
# writes it; the cases name its paths).
TLS = Path(tempfile.mkdtemp(prefix="sse-nginx-bad-input-"))
CERT, KEY, MISSING = str(TLS / "site.crt"), str(TLS / "site.key"), str(TLS / "no-such.pem")

BAD = [
    # wrong types, never coerced to 0 (through preflight alone: no argument spec there)
    bad(
        "connections-10s",
        {"sse_nginx_worker_connections": "10s"},
        "sse_nginx_worker_connections",
        "whole number",
    ),
    bad("hsts-2y", {"sse_nginx_hsts_max_age": "2y"}, "sse_nginx_hsts_max_age", "whole number"),
    bad(
        "https-port-float", {"sse_nginx_https_port": 443.5}, "sse_nginx_https_port", "whole number"
    ),
    bad("http-port-bool", {"sse_nginx_http_port": True}, "sse_nginx_http_port", "whole number"),
    bad(
        "keepalive-30s",
        {"sse_nginx_keepalive_interval": "30s"},
        "sse_nginx_keepalive_interval",
        "a number",
    ),
    bad(
        "margin-inf",
        {"sse_nginx_keepalive_margin": "inf"},
        "sse_nginx_keepalive_margin",
        "a number",
    ),
    bad("rlimit-list", {"sse_nginx_worker_rlimit_nofile": [1]}, "sse_nginx_worker_rlimit_nofile"),
    bad(
        "ssl-buffer-4k",
        {"sse_nginx_ssl_buffer_size": "4k"},
        "sse_nginx_ssl_buffer_size",
        "whole number",
    ),
    bad(
        "proxy-buffer-float",
        {"sse_nginx_proxy_buffer_size": 1024.5},
        "sse_nginx_proxy_buffer_size",
        "whole number",
    ),
    bad(
        "upstreams-string",
        {"sse_nginx_upstreams": "127.0.0.1:8000"},
        "sse_nginx_upstreams",
        "expected a list",
    ),
    bad(
        "locations-dict",
        {"sse_nginx_sse_locations": {"path": "/a"}},
        "sse_nginx_sse_locations",
        "expected a list",
    ),
    bad(
        "location-misspelt-path",
        {"sse_nginx_sse_locations": [{"pth": "/a"}]},
        "sse_nginx_sse_locations[0]",
        "unknown key pth",
    ),
    bad(
        "location-missing-path",
        {"sse_nginx_sse_locations": [{"read_timeout": "1h"}]},
        "sse_nginx_sse_locations[0]",
        "path is required",
    ),
    bad(
        "location-not-a-dict",
        {"sse_nginx_sse_locations": ["/a"]},
        "sse_nginx_sse_locations[0]",
        "a mapping",
    ),
    bad(
        "directives-string",
        {"sse_nginx_extra_directives": "gzip off;"},
        "sse_nginx_extra_directives",
        "expected a list",
    ),
    bad(
        "server-name-list",
        {"sse_nginx_server_name": ["a", "b"]},
        "sse_nginx_server_name",
        "a string",
    ),
    bad("server-name-null", {"sse_nginx_server_name": None}, "sse_nginx_server_name", "a string"),
    # a newline at the end passed every `$` regex once
    bad(
        "server-name-newline",
        {"sse_nginx_server_name": "localhost\n"},
        "sse_nginx_server_name",
        "control character",
    ),
    bad(
        "site-name-newline",
        {"sse_nginx_site_name": "sse\n"},
        "sse_nginx_site_name",
        "control character",
    ),
    bad(
        "site-name-dotdot",
        {"sse_nginx_site_name": "a..b"},
        "sse_nginx_site_name",
        "letters, digits",
    ),
    bad(
        "site-name-slash",
        {"sse_nginx_site_name": "../etc"},
        "sse_nginx_site_name",
        "letters, digits",
    ),
    bad(
        "access-log-newline",
        {"sse_nginx_access_log": "/var/log/nginx/a.log\n"},
        "sse_nginx_access_log",
        "control character",
    ),
    bad(
        "access-log-dotdot",
        {"sse_nginx_access_log": "/var/log/../../etc/x"},
        "sse_nginx_access_log",
        "'..'",
    ),
    bad(
        "access-log-semicolon",
        {"sse_nginx_access_log": "/var/log/a.log;"},
        "sse_nginx_access_log",
        "absolute file path",
    ),
    bad(
        "location-path-newline",
        {"sse_nginx_sse_locations": [{**LOC, "path": "/a\n"}]},
        "sse_nginx_sse_locations[0].path",
        "control character",
    ),
    bad(
        "location-path-brace",
        {"sse_nginx_sse_locations": [{**LOC, "path": "/a{"}]},
        "sse_nginx_sse_locations[0].path",
        "must start",
    ),
    bad(
        "location-path-relative",
        {"sse_nginx_sse_locations": [{**LOC, "path": "a"}]},
        "sse_nginx_sse_locations[0].path",
        "must start",
    ),
    bad(
        "location-path-root",
        {"sse_nginx_sse_locations": [{**LOC, "path": "/"}]},
        "sse_nginx_sse_locations[0].path",
        "catch-all",
    ),
    bad(
        "location-path-duplicate",
        {"sse_nginx_sse_locations": [LOC, LOC]},
        "sse_nginx_sse_locations[1].path",
        "more than once",
    ),
    bad(
        "upstream-newline",
        {"sse_nginx_upstreams": ["127.0.0.1:8000\n"]},
        "sse_nginx_upstreams[0]",
        "control character",
    ),
    bad(
        "upstream-no-port",
        {"sse_nginx_upstreams": ["127.0.0.1:8000", "10.0.0.5"]},
        "sse_nginx_upstreams[1]",
        "host:port",
    ),
    bad(
        "upstream-port-0",
        {"sse_nginx_upstreams": ["backend:0"]},
        "sse_nginx_upstreams[0]",
        "1..65535",
    ),
    bad(
        "upstream-port-65536",
        {"sse_nginx_upstreams": ["[::1]:65536"]},
        "sse_nginx_upstreams[0]",
        "1..65535",
    ),
    bad(
        "upstream-injection",
        {"sse_nginx_upstreams": ["a:1; server evil:80"]},
        "sse_nginx_upstreams[0]",
        "host:port",
    ),
    bad(
        "upstream-unix-dotdot",
        {"sse_nginx_upstreams": ["unix:/run/../x.sock"]},
        "sse_nginx_upstreams[0]",
        "unix:/",
    ),
    bad("upstreams-empty", {"sse_nginx_upstreams": []}, "sse_nginx_upstreams", "at least one"),
    bad(
        "down-not-an-upstream",
        {"sse_nginx_upstreams": ["a:8000"], "sse_nginx_upstreams_down": ["c:8000"]},
        "sse_nginx_upstreams_down[0]",
        "not one of",
    ),
    bad(
        "down-every-upstream",
        {"sse_nginx_upstreams": ["a:8000"], "sse_nginx_upstreams_down": ["a:8000"]},
        "sse_nginx_upstreams_down",
        "502",
    ),
    # extra directives cannot change the configuration's structure
    directive(
        "directive-closes-server",
        "proxy_buffering on; } server { listen 8080;",
        "more than one directive",
    ),
    directive("directive-brace", "}", "'}' outside quotes"),
    directive("directive-block", "location /x { return 200; }", "'{' outside quotes"),
    directive("directive-no-semicolon", "gzip off", "end with ';'"),
    directive("directive-two", "gzip off; gzip_vary on;", "more than one directive"),
    directive("directive-comment", "# gzip off;", "'#' outside quotes"),
    directive("directive-newline", "gzip off;\nlisten 8080;", "control character"),
    directive("directive-listen", "listen 8080;", "writes itself"),
    directive("directive-unclosed-quote", 'add_header X "a;', "not closed"),
    directive("directive-empty", ";", "empty"),
    # wrong nginx times
    bad(
        "timeout-not-nginx-time",
        {"sse_nginx_read_timeout": "1 hour"},
        "sse_nginx_read_timeout",
        "not a valid nginx time",
    ),
    bad(
        "timeout-newline",
        {"sse_nginx_send_timeout": "1h\n"},
        "sse_nginx_send_timeout",
        "control character",
    ),
    bad("timeout-float", {"sse_nginx_read_timeout": 1.5}, "sse_nginx_read_timeout", "a string"),
    bad(
        "location-timeout",
        {"sse_nginx_sse_locations": [{**LOC, "send_timeout": "1h30x"}]},
        "sse_nginx_sse_locations[0].send_timeout",
        "not a valid nginx time",
    ),
    bad(
        "location-timeout-months",
        {"sse_nginx_sse_locations": [{**LOC, "read_timeout": "1M"}]},
        "sse_nginx_sse_locations[0].read_timeout",
        "not allowed",
    ),
    bad(
        "shutdown-timeout",
        {"sse_nginx_worker_shutdown_timeout": "3 minutes"},
        "sse_nginx_worker_shutdown_timeout",
        "not a valid nginx time",
    ),
    # the staging folder is the role's own: never a system folder, never /etc/nginx
    staging("staging-var-lib", "/var/lib", "folder of the system"),
    staging("staging-root", "/", "folder of the system"),
    staging("staging-tmp", "/tmp/", "folder of the system"),
    staging("staging-home", "/home", "folder of the system"),
    staging("staging-srv", "/srv", "folder of the system"),
    staging("staging-var-lib-nginx", "/var/lib/nginx", "folder of the system"),
    staging("staging-etc", "/etc", "folder of the system"),
    staging("staging-usr", "/usr", "folder of the system"),
    staging("staging-proc", "/proc/sse", "folder of the system"),
    staging("staging-etc-nginx", "/etc/nginx/staging", "outside /etc/nginx"),
    staging("staging-relative", "staging", "absolute folder"),
    staging("staging-dotdot", "/var/lib/sse/../../lib", "absolute folder"),
    staging("staging-newline", "/var/lib/sse-nginx/staging\n", "control character"),
    # ranges and cross-checks
    bad(
        "connections-0",
        {"sse_nginx_worker_connections": 0},
        "sse_nginx_worker_connections",
        "at least 1",
    ),
    bad(
        "rlimit-below-connections",
        {"sse_nginx_worker_rlimit_nofile": 100, "sse_nginx_worker_connections": 1024},
        "sse_nginx_worker_rlimit_nofile",
        "0 (derived from",
    ),
    bad(
        "ssl-buffer-32k",
        {"sse_nginx_ssl_buffer_size": 32768},
        "sse_nginx_ssl_buffer_size",
        "512 to 16384",
    ),
    bad(
        "proxy-buffer-512",
        {"sse_nginx_proxy_buffer_size": 512},
        "sse_nginx_proxy_buffer_size",
        "1024 to 65536",
    ),
    bad("same-ports", {"sse_nginx_http_port": 443}, "sse_nginx_http_port", "two different"),
    bad(
        "port-70000-as-text", {"sse_nginx_https_port": "70000"}, "sse_nginx_https_port", "1..65535"
    ),
    bad(
        "read-timeout-below-keepalive",
        {"sse_nginx_sse_locations": [{**LOC, "read_timeout": "20s"}]},
        "sse_nginx_sse_locations[0] (/notify/events): read_timeout 20s is not longer than "
        "sse_nginx_keepalive_interval (30s) + sse_nginx_keepalive_margin (10s)",
    ),
    bad(
        "fallback-read-timeout-below-keepalive",
        {"sse_nginx_sse_locations": [{"path": "/a"}], "sse_nginx_read_timeout": "40s"},
        "sse_nginx_sse_locations[0] (/a): read_timeout 40s from sse_nginx_read_timeout",
    ),
    bad(
        "cert-without-key",
        {"sse_nginx_tls_cert": CERT},
        "sse_nginx_tls_cert is set but sse_nginx_tls_key is empty",
    ),
    bad(
        "key-without-cert",
        {"sse_nginx_tls_key": KEY},
        "sse_nginx_tls_key is set but sse_nginx_tls_cert is empty",
    ),
    bad(
        "cert-not-on-controller",
        {"sse_nginx_tls_cert": MISSING, "sse_nginx_tls_key": KEY},
        "sse_nginx_tls_cert",
        "not a file on the controller",
    ),
    bad(
        "key-newline",
        {"sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY + "\n"},
        "sse_nginx_tls_key",
        "control character",
    ),
    # the role as a whole: its argument spec, then the same preflight
    bad(
        "main-locations-dict",
        {"sse_nginx_sse_locations": {"path": "/a"}},
        "sse_nginx_sse_locations",
        entry="main",
    ),
    bad(
        "main-unknown-location-key",
        {"sse_nginx_sse_locations": [{**LOC, "buffering": "on"}]},
        "sse_nginx_sse_locations",
        "buffering",
        entry="main",
    ),
    bad(
        "main-connections-10s",
        {"sse_nginx_worker_connections": "10s"},
        "sse_nginx_worker_connections",
        entry="main",
    ),
    bad(
        "main-directive-brace",
        {"sse_nginx_extra_directives": ["}"]},
        "sse_nginx_extra_directives[0]",
        entry="main",
    ),
    bad(
        "main-server-name-newline",
        {"sse_nginx_server_name": "x\n"},
        "sse_nginx_server_name",
        entry="main",
    ),
    bad(
        "main-staging-var-lib",
        {"sse_nginx_staging_dir": "/var/lib"},
        "sse_nginx_staging_dir",
        entry="main",
    ),
    # the entry point a rolling release drains with checks its own inputs
    bad(
        "upstreams-down-not-an-upstream",
        {"sse_nginx_upstreams": ["a:8000"], "sse_nginx_upstreams_down": ["a:8001"]},
        "sse_nginx_upstreams_down[0]",
        entry="upstreams",
    ),
    bad(
        "upstreams-bad-upstream",
        {"sse_nginx_upstreams": ["a\n:8000"]},
        "sse_nginx_upstreams[0]",
        entry="upstreams",
    ),
    bad(
        "upstreams-entry-string",
        {"sse_nginx_upstreams": "a:8000"},
        "sse_nginx_upstreams",
        "expected a list",
        entry="upstreams",
    ),
    bad(
        "upstreams-staging-var-lib",
        {"sse_nginx_staging_dir": "/var/lib"},
        "sse_nginx_staging_dir",
        entry="upstreams",
    ),
    bad(
        "upstreams-down-dict",
        {"sse_nginx_upstreams_down": {"a": 1}},
        "sse_nginx_upstreams_down",
        entry="upstreams",
    ),
    # through site.yml, as a user runs it (its first play checks every role's input)
    bad(
        "site-connections-10s",
        {"sse_nginx_worker_connections": "10s"},
        "sse_nginx_worker_connections",
        entry="site",
    ),
    bad("site-hsts-2y", {"sse_nginx_hsts_max_age": "2y"}, "sse_nginx_hsts_max_age", entry="site"),
    bad(
        "site-directive-closes-server",
        {"sse_nginx_extra_directives": ["gzip on; } server { listen 8081;"]},
        "sse_nginx_extra_directives[0]",
        entry="site",
    ),
    bad(
        "site-server-name-newline",
        {"sse_nginx_server_name": "localhost\n"},
        "sse_nginx_server_name",
        entry="site",
    ),
    bad(
        "site-staging-var-lib",
        {"sse_nginx_staging_dir": "/var/lib"},
        "sse_nginx_staging_dir",
        entry="site",
    ),
    # mode locations (issue 16): its own inputs, and what the user's server block owns
    bad("mode-unknown", {"sse_nginx_mode": "server"}, "sse_nginx_mode", "site, locations"),
    bad("mode-unknown-main", {"sse_nginx_mode": "nginx"}, "sse_nginx_mode", entry="main"),
    bad(
        "locations-state-unknown",
        {"sse_nginx_mode": "locations", "sse_nginx_locations_state": "gone"},
        "sse_nginx_locations_state",
        "present, absent",
    ),
    bad(
        "locations-state-absent-in-site-mode",
        {"sse_nginx_locations_state": "absent"},
        "sse_nginx_locations_state",
        "locations only",
    ),
    bad(
        "site-file-relative",
        {"sse_nginx_mode": "locations", "sse_nginx_site_file": "sites-available/example"},
        "sse_nginx_site_file",
    ),
    bad(
        "site-file-in-site-mode",
        {"sse_nginx_site_file": "/etc/nginx/sites-available/example"},
        "sse_nginx_site_file",
        "locations",
    ),
    bad(
        "site-file-list",
        {"sse_nginx_mode": "locations", "sse_nginx_site_file": ["/etc/nginx/x"]},
        "sse_nginx_site_file",
    ),
    bad(
        "locations-tls-pair",
        {"sse_nginx_mode": "locations", "sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY},
        "sse_nginx_tls_cert",
        "owns its certificate",
    ),
    bad(
        "locations-server-directives",
        {"sse_nginx_mode": "locations", "sse_nginx_extra_directives": ["gzip off;"]},
        "sse_nginx_extra_directives",
        "sse_nginx_extra_location_directives",
    ),
    bad(
        "location-directive-two",
        {"sse_nginx_extra_location_directives": ["gzip off; limit_rate 0;"]},
        "sse_nginx_extra_location_directives[0]",
    ),
    bad(
        "location-directive-string",
        {"sse_nginx_extra_location_directives": "limit_rate 0;"},
        "sse_nginx_extra_location_directives",
    ),
    bad(
        "location-directive-block",
        {"sse_nginx_extra_location_directives": ["if ($x) { return 404; }"]},
        "sse_nginx_extra_location_directives[0]",
        entry="main",
    ),
]

# Unusual but valid: through `main` they reach the first host task (the tripwire).
VALID = [
    Case("defaults", {}, entry="main"),
    Case(
        "upstream-forms",
        {
            "sse_nginx_upstreams": [
                "127.0.0.1:8000",
                "[::1]:8001",
                "unix:/run/sse/backend.sock",
                "backend-2.example.com:8000",
            ]
        },
        entry="main",
    ),
    Case(
        "ipv6-upstream-drained",
        {
            "sse_nginx_upstreams": ["[::1]:8000", "[::1]:8001"],
            "sse_nginx_upstreams_down": ["[::1]:8000"],
        },
        entry="main",
    ),
    Case(
        "several-locations",
        {
            "sse_nginx_sse_locations": [
                {"path": "/a", "read_timeout": "1h30m"},
                {"path": "/b/c.d", "read_timeout": 3600},
                {"path": "/notify/events"},
            ],
            "sse_nginx_keepalive_interval": 15.5,
            "sse_nginx_worker_shutdown_timeout": "90s",
        },
        entry="main",
    ),
    Case(
        "sane-directives",
        {
            "sse_nginx_extra_directives": [
                "proxy_buffering on;",
                "add_header Content-Security-Policy "
                "\"default-src 'self'; frame-ancestors 'none'\" always;",
                "client_max_body_size 1m;",
                "  gzip_types text/plain;  ",
            ]
        },
        entry="main",
    ),
    Case(
        "numbers-as-text",
        {
            "sse_nginx_https_port": "8443",
            "sse_nginx_http_port": "8080",
            "sse_nginx_keepalive_interval": "20",
            "sse_nginx_hsts_max_age": "0",
        },
        entry="main",
    ),
    Case("staging-of-its-own", {"sse_nginx_staging_dir": "/var/lib/nginx-staging"}, entry="main"),
    Case("wildcard-server-name", {"sse_nginx_server_name": "*.example.com"}, entry="main"),
    Case("tls-pair", {"sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY}, entry="main"),
    Case(
        "preflight-numbers-as-text",
        {
            "sse_nginx_worker_connections": "1024",
            "sse_nginx_worker_rlimit_nofile": "4096",
            "sse_nginx_ssl_buffer_size": "4096",
            "sse_nginx_proxy_buffer_size": "2048",
        },
    ),
    Case(
        "upstreams-ipv6",
        {
            "sse_nginx_upstreams": ["[::1]:8000", "127.0.0.1:8000"],
            "sse_nginx_upstreams_down": ["[::1]:8000"],
        },
        entry="upstreams",
    ),
    Case(
        "locations-mode",
        {
            "sse_nginx_mode": "locations",
            "sse_nginx_site_file": "/etc/nginx/sites-available/example",
            "sse_nginx_server_name": "example.test",
            "sse_nginx_extra_location_directives": ["limit_rate 0;"],
        },
        entry="main",
    ),
    Case(
        "locations-absent",
        {"sse_nginx_mode": "locations", "sse_nginx_locations_state": "absent"},
        entry="main",
    ),
]
ALL = BAD + VALID
assert len({case.id for case in ALL}) == len(ALL), "case ids must be unique"


@pytest.fixture(scope="module")
def tls_pair() -> Iterator[None]:
    Path(CERT).write_text("-----BEGIN CERTIFICATE-----\n")
    Path(KEY).write_text("-----BEGIN PRIVATE KEY-----\n")
    yield
    shutil.rmtree(TLS, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_pair: None
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, ALL, batch_runner(ROLE))


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_refused_before_any_module_runs(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(runs[case.id](), case, PREFLIGHT, FIRST_HOST_TASKS)


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_input_passes_every_check(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(runs[case.id](), case, PREFLIGHT, FIRST_HOST_TASKS)
