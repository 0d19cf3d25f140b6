"""Bad TLS-mode and ACME input to sse_nginx is refused before any module runs on a host.

The same tripwire runs as tests/unit/test_nginx_bad_input.py (see its docstring): each
case a tripwired host, refused in the role's preflight naming the variable, no module run;
valid cases pass every check and trip at the first host task ("Install nginx").
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
FIRST_HOST_TASKS = {"main": "Install nginx"}

TLS = Path(tempfile.mkdtemp(prefix="sse-nginx-bad-tls-"))
CERT, KEY = str(TLS / "site.crt"), str(TLS / "site.key")
# what acme mode needs besides the mode
ACME = {
    "sse_nginx_tls_mode": "acme",
    "sse_nginx_server_name": "sse.example.org",
    "sse_nginx_acme_terms_agreed": True,
}


def bad(
    case_id: str, variables: dict[str, Any], names: str, *also: str, entry: str = "preflight"
) -> Case:
    return Case(case_id, variables, names, entry, also)


BAD = [
    bad("mode-unknown", {"sse_nginx_tls_mode": "letsencrypt"}, "sse_nginx_tls_mode", "one of"),
    bad(
        "main-mode-unknown",
        {"sse_nginx_tls_mode": "self_signed"},
        "sse_nginx_tls_mode",
        entry="main",
    ),
    bad(
        "files-without-pair",
        {"sse_nginx_tls_mode": "files"},
        "sse_nginx_tls_mode is files but sse_nginx_tls_cert and sse_nginx_tls_key are empty",
    ),
    bad(
        "self-signed-with-pair",
        {"sse_nginx_tls_mode": "self-signed", "sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY},
        "sse_nginx_tls_mode is self-signed but sse_nginx_tls_cert and sse_nginx_tls_key are set",
    ),
    bad(
        "acme-with-pair",
        {**ACME, "sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY},
        "sse_nginx_tls_mode is acme but sse_nginx_tls_cert and sse_nginx_tls_key are set",
    ),
    bad(
        "acme-terms-not-agreed",
        {**ACME, "sse_nginx_acme_terms_agreed": False},
        "sse_nginx_acme_terms_agreed",
        "must be true in acme mode",
    ),
    bad(
        "acme-terms-as-text",
        {**ACME, "sse_nginx_acme_terms_agreed": "yes"},
        "sse_nginx_acme_terms_agreed",
        "true or false",
    ),
    bad(
        "acme-wildcard",
        {**ACME, "sse_nginx_server_name": "*.example.org"},
        "sse_nginx_server_name",
        "HTTP-01",
    ),
    bad(
        "acme-localhost",
        {**ACME, "sse_nginx_server_name": "localhost"},
        "sse_nginx_server_name",
        "at least one dot",
    ),
    bad(
        "acme-directory-not-url",
        {**ACME, "sse_nginx_acme_directory": "acme-v02.api.letsencrypt.org/directory"},
        "sse_nginx_acme_directory",
        "http://",
    ),
    bad(
        "acme-directory-credentials",
        {**ACME, "sse_nginx_acme_directory": "https://user:pw@ca.example.org/dir"},
        "sse_nginx_acme_directory",
        "credentials",
    ),
    bad(
        "acme-renew-days-zero",
        {**ACME, "sse_nginx_acme_renew_days": 0},
        "sse_nginx_acme_renew_days (0) must be at least 1",
    ),
    bad(
        "acme-renew-days-30d",
        {**ACME, "sse_nginx_acme_renew_days": "30d"},
        "sse_nginx_acme_renew_days",
        "whole number",
    ),
    bad(
        "acme-email",
        {**ACME, "sse_nginx_acme_email": "ops at example.org"},
        "sse_nginx_acme_email",
        "not an e-mail address",
    ),
    bad(
        "acme-ca-bundle-relative",
        {**ACME, "sse_nginx_acme_ca_bundle": "pebble.pem"},
        "sse_nginx_acme_ca_bundle",
    ),
    bad(
        "acme-force-as-text",
        {**ACME, "sse_nginx_acme_force": "true"},
        "sse_nginx_acme_force",
        "true or false",
    ),
    bad(
        "streams-zero",
        {"sse_nginx_http2_max_concurrent_streams": 0},
        "sse_nginx_http2_max_concurrent_streams (0) must be at least 1",
    ),
    bad(
        "streams-as-float",
        {"sse_nginx_http2_max_concurrent_streams": 128.5},
        "sse_nginx_http2_max_concurrent_streams",
        "whole number",
    ),
    bad(
        "csp-double-quote",
        {"sse_nginx_content_security_policy": 'default-src "self"'},
        "sse_nginx_content_security_policy",
        "double quote",
    ),
    bad(
        "csp-dollar",
        {"sse_nginx_content_security_policy": "default-src $host"},
        "sse_nginx_content_security_policy",
        "a $",
    ),
    bad(
        "csp-newline",
        {"sse_nginx_content_security_policy": "default-src 'self'\nscript-src 'none'"},
        "sse_nginx_content_security_policy",
        "control character",
    ),
]
VALID = [
    # today's playbooks: the pair alone still means files mode
    Case("pair-without-mode", {"sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY}, entry="main"),
    Case(
        "files-mode",
        {"sse_nginx_tls_mode": "files", "sse_nginx_tls_cert": CERT, "sse_nginx_tls_key": KEY},
        entry="main",
    ),
    Case("self-signed-mode", {"sse_nginx_tls_mode": "self-signed"}, entry="main"),
    Case(
        "no-csp-many-streams",
        {"sse_nginx_content_security_policy": "", "sse_nginx_http2_max_concurrent_streams": 4096},
        entry="main",
    ),
    Case(
        "acme-mode",
        {
            **ACME,
            "sse_nginx_acme_email": "ops@example.org",
            "sse_nginx_acme_renew_days": 400,
            "sse_nginx_acme_ca_bundle": "/etc/ssl/private-ca.pem",
            "sse_nginx_acme_directory": "https://127.0.0.1:14000/dir",
        },
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
