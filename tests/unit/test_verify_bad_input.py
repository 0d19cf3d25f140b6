"""Bad input to sse_verify is refused before the probe or any module runs, naming the variable.

The harness of test_nginx_bad_input.py (tripwire.py): each case is a tripwired host of one
ansible-playbook run (or, through site.yml, a run of its own), entered as
`tasks_from: preflight` (what site.yml's first play runs, with no argument spec: wrong
types must be refused there too), the role's `main` (argument spec, then preflight) or
site.yml. A bad case passes when the run fails in the preflight or the argument
validation, every failure message names the variable, and no module ran on the host.
Valid input passes every check; through `main` the probe is where the tripwire stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tripwire import Case, Played, assert_case, batch_runner, start_runs

ROLE = "sse_verify"
PREFLIGHT = ("roles/sse_verify/tasks/preflight.yml",)
# valid input through the whole role is stopped by the tripwire at the probe
FIRST_HOST_TASKS = {"main": "Hold the stream open through nginx"}


def bad(case_id: str, variables: dict[str, Any], *also: str, entry: str = "preflight") -> Case:
    """A case with one bad variable: the one it sets last is the one named."""
    return Case(case_id, variables, list(variables)[-1], entry, also)


BAD = [
    # wrong types, never coerced (through preflight alone: no argument spec there)
    bad("hold-10s", {"sse_verify_hold": "10s"}, "a number"),
    bad("hold-abc", {"sse_verify_hold": "abc"}, "a number"),
    bad("hold-inf", {"sse_verify_hold": "inf"}, "a number"),
    bad("hold-list", {"sse_verify_hold": [35]}, "a number"),
    bad("keepalive-30s", {"sse_verify_keepalive_interval": "30s"}, "a number"),
    bad("tolerance-2s", {"sse_verify_tolerance": "2s"}, "a number"),
    bad("first-byte-bool", {"sse_verify_first_byte_timeout": True}, "a number"),
    # the string "false" is true in a `when:`
    bad("from-controller-text", {"sse_verify_from_controller": "false"}, "true or false"),
    bad("probe-text", {"sse_verify_probe": "yes"}, "true or false"),
    bad("insecure-number", {"sse_verify_insecure": 0}, "true or false"),
    bad("broker-text", {"sse_verify_broker": "false"}, "true or false"),
    bad("url-list", {"sse_verify_url": ["https://localhost/"]}, "a string"),
    # whole strings: a trailing newline passed `^https?://[^/\s]+` once
    bad("url-newline", {"sse_verify_url": "https://localhost/notify/events\n"}, "control"),
    bad("url-ftp", {"sse_verify_url": "ftp://x"}, "http"),
    bad("url-not-a-url", {"sse_verify_url": "not a url"}, "http"),
    bad("url-credentials", {"sse_verify_url": "https://u:p@localhost/"}, "credentials"),
    bad("url-port-0", {"sse_verify_url": "https://localhost:0/"}, "port"),
    bad("resolve-malformed", {"sse_verify_resolve": "localhost:443"}, "HOST:PORT:ADDR"),
    bad("resolve-newline", {"sse_verify_resolve": "localhost:443:127.0.0.1\n"}, "control"),
    bad("resolve-other-host", {"sse_verify_resolve": "example.com:443:127.0.0.1"}, "host and port"),
    bad("resolve-other-port", {"sse_verify_resolve": "localhost:8443:127.0.0.1"}, "host and port"),
    bad("access-log-relative", {"sse_verify_access_log": "access.log"}, "absolute"),
    bad("access-log-newline", {"sse_verify_access_log": "/var/log/nginx/a.log\n"}, "control"),
    bad("cacert-relative", {"sse_verify_cacert": "tls/sse.crt"}, "absolute"),
    bad("controller-cacert-relative", {"sse_verify_controller_cacert": "ca.pem"}, "absolute"),
    bad("controller-cacert-list", {"sse_verify_controller_cacert": ["/ca.pem"]}, "a string"),
    bad(
        "controller-cacert-missing",
        {
            "sse_verify_from_controller": True,
            "sse_verify_controller_url": "https://localhost/notify/events",
            "sse_verify_controller_cacert": "/nonexistent/sse-ca.crt",
        },
        "no file on the controller",
    ),
    bad("expect-first-two-lines", {"sse_verify_expect_first": ":ok\ndata: x"}, "control"),
    bad("report-dir-newline", {"sse_verify_report_dir": "/tmp/reports\n"}, "control"),
    # ranges and cross-checks
    bad("hold-0", {"sse_verify_hold": 0}, "positive"),
    bad("keepalive--1", {"sse_verify_keepalive_interval": -1}, "positive"),
    # a hold within interval + tolerance never requires a keepalive: the check proves nothing
    bad(
        "hold-within-keepalive-limit", {"sse_verify_keepalive_interval": 30, "sse_verify_hold": 10}
    ),
    bad(
        "controller-url-empty",
        {"sse_verify_from_controller": True, "sse_verify_controller_url": ""},
        "when sse_verify_from_controller is true",
    ),
    bad("controller-url-newline", {"sse_verify_controller_url": "https://x/\n"}, "control"),
    # HTTP/2 from the controller: a real boolean, with the controller check, over TLS
    bad("controller-http2-text", {"sse_verify_controller_http2": "true"}, "true or false"),
    bad(
        "controller-http2-without-controller",
        {"sse_verify_from_controller": False, "sse_verify_controller_http2": True},
        "sse_verify_from_controller true",
    ),
    bad(
        "controller-http2-plain-http",
        {
            "sse_verify_from_controller": True,
            "sse_verify_controller_url": "http://localhost:8080/notify/events",
            "sse_verify_controller_http2": True,
        },
        "https://",
    ),
    bad("main-controller-http2-text", {"sse_verify_controller_http2": 1}, entry="main"),
    # the role as a whole
    bad("main-hold-10s", {"sse_verify_hold": "10s"}, entry="main"),
    bad("main-url-newline", {"sse_verify_url": "https://localhost/\n"}, entry="main"),
    bad("main-resolve-other-host", {"sse_verify_resolve": "a:443:127.0.0.1"}, entry="main"),
    # through site.yml, as a user runs it
    bad("site-hold-10s", {"sse_verify_hold": "10s"}, entry="site"),
    bad("site-url-newline", {"sse_verify_url": "https://localhost/x\n"}, entry="site"),
]
VALID = [
    Case("defaults", {}, entry="main"),
    Case(
        "ipv6-resolve-and-port",
        {
            "sse_verify_url": "https://sse.example.com:8443/notify/events",
            "sse_verify_resolve": "sse.example.com:8443:[::1]",
        },
        entry="main",
    ),
    Case(
        "numbers-as-text",
        {
            "sse_verify_hold": "40",
            "sse_verify_keepalive_interval": "30.5",
            "sse_verify_tolerance": "0",
        },
        entry="main",
    ),
    Case("no-access-log", {"sse_verify_access_log": "", "sse_verify_cacert": "/etc/ssl/ca.pem"}),
    Case(
        "from-controller",
        {"sse_verify_from_controller": True, "sse_verify_controller_url": "http://[::1]:8080/e"},
    ),
    Case(
        "from-controller-http2",
        {
            "sse_verify_from_controller": True,
            "sse_verify_controller_url": "https://localhost:18443/notify/events",
            # a file the controller has (Debian's bundle)
            "sse_verify_controller_cacert": "/etc/ssl/certs/ca-certificates.crt",
            "sse_verify_controller_http2": True,
        },
    ),
]
ALL = BAD + VALID
assert len({case.id for case in ALL}) == len(ALL), "case ids must be unique"


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, ALL, batch_runner(ROLE))


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_refused_before_the_probe(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(runs[case.id](), case, PREFLIGHT, FIRST_HOST_TASKS)


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_input_passes_every_check(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(runs[case.id](), case, PREFLIGHT, FIRST_HOST_TASKS)
