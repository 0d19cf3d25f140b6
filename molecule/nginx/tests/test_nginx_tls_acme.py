"""sse_nginx_tls_mode=acme against Pebble, Let's Encrypt's test ACME server.

Pebble and its DNS (pebble-challtestsrv: acme.sse.test -> 127.0.0.1, nothing else) run in
nginx-debian13 (prepare.yml); Pebble's HTTP-01 check connects to port 80 of that name,
i.e. to the nginx the role manages. The role is applied from the controller to that host
only, in this order (each step a session fixture that needs the one before):

1. first issue: nginx goes live on a placeholder, the order runs through it;
2. a second run changes nothing: no order, no reload;
3. orders that fail (a directory that does not answer, a name that does not point here):
   every file under /etc/nginx and nginx's processes exactly as before, the error names
   the domain and the ACME error;
4. a forced renewal while `sseprobe check` holds a stream from the controller with
   Pebble's root trusted: a reload (not a restart), the stream survives;
5. sslyze's Mozilla intermediate check on the ACME certificate, Pebble's root trusted.

At the end converge.yml is applied again to the host (self-signed mode), so the scenario
ends as converged. Runs after test_nginx_changes.py (file order).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nginx_helpers import (
    SITE,
    apply_role,
    assert_mozilla_intermediate,
    held_stream_state,
    nginx_processes,
    podman_host,
    start_held_stream,
    stop_held_stream,
    tree_listing,
)
from sse_testinfra import published_https_port

ACME_HOST = "nginx-debian13"
DOMAIN = "acme.sse.test"  # the one name Pebble's DNS resolves (to 127.0.0.1)
UNPOINTED = "elsewhere.sse.test"  # a name Pebble's DNS does not resolve
ACME = {
    "sse_nginx_tls_mode": "acme",
    "sse_nginx_server_name": DOMAIN,
    "sse_nginx_acme_directory": "https://127.0.0.1:14000/dir",
    "sse_nginx_acme_ca_bundle": "/etc/pebble/api-ca.pem",
    "sse_nginx_acme_terms_agreed": True,
    "sse_nginx_acme_email": "ops@sse.test",
}
CERT = f"/etc/nginx/tls/{SITE}-acme.crt"
ACCOUNT_KEY = f"/etc/nginx/tls/{SITE}-acme-account.key"
WEBROOT_CHALLENGES = f"/var/lib/sse-nginx-acme/{SITE}/webroot/.well-known/acme-challenge"
SSEPROBE = Path(sys.executable).with_name("sseprobe")


@pytest.fixture(scope="session")
def acme_host():
    return podman_host(ACME_HOST)


def recap(proc: subprocess.CompletedProcess[str]) -> str:
    match = re.search(rf"^{ACME_HOST}\s*:.*$", proc.stdout, re.M)
    assert match, proc.stdout[-3000:] + proc.stderr
    return match.group(0)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def task_status(proc: subprocess.CompletedProcess[str], task: str) -> str:
    """ok / changed / skipping / fatal / ... of the role's task `task` (its first run)."""
    match = re.search(
        rf"^TASK \[sse_nginx : {re.escape(task)}.*?$\n(?:.*\n)*?^(\w+): \[{ACME_HOST}\]",
        proc.stdout,
        re.M,
    )
    return match.group(1) if match else "not run"


def fingerprint(host) -> str:
    return host.check_output(f"openssl x509 -in {CERT} -noout -fingerprint -sha256")


def served(host, domain: str = DOMAIN) -> str:
    """Subject, issuer and serial of the certificate nginx serves for `domain`."""
    return host.check_output(
        f"openssl s_client -connect 127.0.0.1:443 -servername {domain} < /dev/null 2>/dev/null"
        " | openssl x509 -noout -ext subjectAltName -issuer -serial"
    )


def state(host) -> dict:
    return {
        "tree": tree_listing(host),
        "processes": nginx_processes(host),
        "served": served(host),
    }


@pytest.fixture(scope="session")
def pebble_root(acme_host, tmp_path_factory) -> Path:
    """Pebble's issuing root (new at every Pebble start), from its management API, on
    the controller and in the host's /tmp."""
    pem = acme_host.check_output(
        "curl -sf --cacert /etc/pebble/api-ca.pem https://127.0.0.1:15000/roots/0"
        " | tee /tmp/pebble-root.pem"
    )
    assert "BEGIN CERTIFICATE" in pem, pem
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_text(pem + "\n")
    return path


@pytest.fixture(scope="session")
def first_issue(acme_host, pebble_root) -> dict:
    # a first issue also when the scenario is verified again: no ACME pair from before
    acme_host.check_output(f"rm -f /etc/nginx/tls/{SITE}-acme*")
    started = time.monotonic()
    proc = apply_role(ACME, limit=ACME_HOST)
    yield {
        "proc": proc,
        "seconds": time.monotonic() - started,
        "after": state(acme_host),
        "fingerprint": fingerprint(acme_host),
    }
    restore = apply_role(limit=ACME_HOST)
    assert restore.returncode == 0, output(restore)[-5000:]
    # back on the local CA's leaf (self-signed mode)
    assert f"{SITE} local CA" in served(acme_host, "localhost")


def test_first_issue_serves_a_certificate_pebble_issued(acme_host, first_issue, pebble_root):
    proc = first_issue["proc"]
    assert proc.returncode == 0, output(proc)[-5000:]
    # nginx went live on the placeholder, then the order ran through it
    assert task_status(proc, "Sign the placeholder certificate") == "changed"
    assert task_status(proc, "Have the CA check them") == "changed"
    served_now = first_issue["after"]["served"]
    # Pebble's certificates name the domain in subjectAltName only
    assert f"DNS:{DOMAIN}" in served_now and "Pebble Intermediate" in served_now, served_now
    # verified with Pebble's root as a client would, through nginx, name and chain
    result = acme_host.run(
        f"curl -sf --cacert /tmp/pebble-root.pem --resolve {DOMAIN}:443:127.0.0.1 https://{DOMAIN}/"
    )
    assert result.rc == 0 and result.stdout.strip() == "hello", result.stderr


def test_first_issue_keeps_the_account_key_root_only_and_unprinted(acme_host, first_issue):
    key = acme_host.file(ACCOUNT_KEY)
    assert key.mode == 0o600 and key.user == "root"
    lines = [line for line in key.content_string.splitlines() if "-----" not in line]
    assert lines and not [line for line in lines if line in output(first_issue["proc"])]


def test_http_answers_challenges_before_it_redirects(acme_host, first_issue):
    # the answers are removed after the order; the location stays, then 404, not 301
    assert acme_host.check_output(f"ls -A {WEBROOT_CHALLENGES}") == ""
    probe = acme_host.run(
        f"echo probe > {WEBROOT_CHALLENGES}/t && curl -s -w ' %{{http_code}}'"
        f" -H 'Host: {DOMAIN}' http://127.0.0.1/.well-known/acme-challenge/t;"
        f" rm -f {WEBROOT_CHALLENGES}/t"
    )
    assert probe.stdout == "probe\n 200", probe.stdout
    redirect = acme_host.run(
        f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' -H 'Host: {DOMAIN}'"
        " http://127.0.0.1/a?b=1"
    )
    assert redirect.stdout == f"301 https://{DOMAIN}/a?b=1"


# --- 2. a run with nothing to do -----------------------------------------------------


@pytest.fixture(scope="session")
def no_change(acme_host, first_issue) -> dict:
    before = state(acme_host)
    proc = apply_role(ACME, limit=ACME_HOST)
    return {"proc": proc, "before": before, "after": state(acme_host)}


def test_second_run_changes_nothing_and_orders_nothing(no_change, first_issue, acme_host):
    proc = no_change["proc"]
    assert proc.returncode == 0, output(proc)[-5000:]
    assert "changed=0" in recap(proc), recap(proc)
    # the order found more than sse_nginx_acme_renew_days left: no second step
    assert task_status(proc, "Open the order") == "ok"
    assert task_status(proc, "Have the CA check them") == "skipping"
    assert no_change["after"]["tree"] == no_change["before"]["tree"]
    assert no_change["after"]["processes"][:2] == no_change["before"]["processes"][:2]
    assert fingerprint(acme_host) == first_issue["fingerprint"]


# --- 3. orders that fail leave everything as it was ----------------------------------


def failed_order(acme_host, extra: dict) -> dict:
    before = state(acme_host)
    proc = apply_role({**ACME, **extra}, limit=ACME_HOST)
    return {"proc": proc, "before": before, "after": state(acme_host)}


def assert_unchanged(result: dict) -> None:
    # every file under /etc/nginx byte for byte, the same master and workers (no reload),
    # the same certificate served
    assert result["after"]["tree"] == result["before"]["tree"]
    assert result["after"]["processes"][:2] == result["before"]["processes"][:2]
    assert result["after"]["served"] == result["before"]["served"]


DEAD_DIRECTORY = "https://127.0.0.1:14009/dir"  # nothing listens there


@pytest.fixture(scope="session")
def dead_directory(acme_host, no_change) -> dict:
    # forced: the run must reach the CA, not stop at "more than 30 days left"
    extra = {"sse_nginx_acme_directory": DEAD_DIRECTORY, "sse_nginx_acme_force": True}
    return failed_order(acme_host, extra)


def test_directory_that_does_not_answer_fails_naming_domain_and_error(dead_directory):
    out = output(dead_directory["proc"])
    assert dead_directory["proc"].returncode != 0, out[-5000:]
    assert f"ACME: no certificate for {DOMAIN} from {DEAD_DIRECTORY}: " in out, out[-5000:]
    assert "Connection refused" in out, out[-5000:]
    # at once, by the role's one check of the directory (ansible.builtin.uri's words), not
    # after acme_certificate's 20 retries 10 s apart ("Giving up after 20 retries")
    assert "Status code was -1 and not [200]: Request failed" in out, out[-5000:]
    assert "Giving up after" not in out, out[-5000:]
    assert_unchanged(dead_directory)


@pytest.fixture(scope="session")
def unpointed_domain(acme_host, dead_directory) -> dict:
    return failed_order(acme_host, {"sse_nginx_server_name": UNPOINTED})


def test_domain_http01_cannot_validate_fails_naming_domain_and_error(unpointed_domain):
    out = output(unpointed_domain["proc"])
    assert unpointed_domain["proc"].returncode != 0, out[-5000:]
    assert f"ACME: no certificate for {UNPOINTED} from " in out, out[-5000:]
    # the CA's own words: its HTTP-01 check of that name failed, and why
    assert f"Failed to validate challenge for dns:{UNPOINTED}" in out, out[-5000:]
    assert "Challenge http-01: Error urn:ietf:params:acme:error:" in out, out[-5000:]
    assert f'could not resolve URL "http://{UNPOINTED}:80/' in out, out[-5000:]
    assert_unchanged(unpointed_domain)
    # the name never reached nginx
    assert UNPOINTED not in unpointed_domain["after"]["tree"]


# --- 4. a forced renewal under a held stream -------------------------------------------

SETTLE = 3


@pytest.fixture(scope="session")
def forced_renewal(acme_host, unpointed_domain, first_issue) -> dict:
    """A stream held through nginx by curl (Pebble's root trusted, the ACME name) while
    the role renews the certificate before its time."""
    before = state(acme_host)
    target = (
        f"-s --cacert /tmp/pebble-root.pem --resolve {DOMAIN}:443:127.0.0.1"
        f" https://{DOMAIN}/notify/events"
    )
    start_held_stream(acme_host, "acme", target)
    time.sleep(SETTLE)
    started = time.monotonic()
    proc = apply_role({**ACME, "sse_nginx_acme_force": True}, limit=ACME_HOST)
    time.sleep(SETTLE)
    held_for = time.monotonic() - started + SETTLE
    alive, held = held_stream_state(acme_host, "acme")
    after = state(acme_host)  # while the stream is held: its old worker still runs
    stop_held_stream(acme_host, "acme")
    return {
        "proc": proc,
        "before": before,
        "after": after,
        "held_alive": alive,
        "held_output": held,
        "held_for": held_for,
        "fingerprint": fingerprint(acme_host),
    }


def test_forced_renewal_issues_a_new_certificate(forced_renewal, first_issue):
    proc = forced_renewal["proc"]
    assert proc.returncode == 0, output(proc)[-5000:]
    assert task_status(proc, "Have the CA check them") == "changed"
    assert forced_renewal["fingerprint"] != first_issue["fingerprint"]
    assert forced_renewal["after"]["served"] != forced_renewal["before"]["served"]
    assert "Pebble Intermediate" in forced_renewal["after"]["served"]


def test_forced_renewal_reloads_and_keeps_the_held_stream(forced_renewal):
    before_master, before_workers, _ = forced_renewal["before"]["processes"]
    after_master, after_workers, leaving = forced_renewal["after"]["processes"]
    assert after_master == before_master, "nginx was restarted, not reloaded"
    assert after_workers and not after_workers & before_workers, "workers not replaced"
    # an old worker still serves the held stream, shutting down gracefully
    assert leaving & before_workers, (before_workers, after_workers, leaving)
    held = forced_renewal["held_output"]
    assert forced_renewal["held_alive"], f"held stream ended: {held!r}"
    assert held.startswith(":ok\n\n"), held
    # the stand-in backend sends one keepalive a second (minus some slack)
    expected = max(5, int(forced_renewal["held_for"]) - 3)
    assert held.count(":keepalive\n\n") >= expected, (forced_renewal["held_for"], held)


def test_probe_verifies_the_renewed_stream_with_pebbles_root(forced_renewal, pebble_root):
    port = published_https_port(ACME_HOST)
    probe = subprocess.run(
        [str(SSEPROBE), "check", "--cacert", str(pebble_root),
         "--resolve", f"{DOMAIN}:{port}:127.0.0.1", "--hold", "4",
         "--keepalive-interval", "1", f"https://{DOMAIN}:{port}/notify/events"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stdout + probe.stderr


# --- 5. Mozilla's intermediate profile on the ACME certificate --------------------------


def test_acme_certificate_meets_mozilla_intermediate(forced_renewal, pebble_root):
    port = published_https_port(ACME_HOST)
    assert_mozilla_intermediate(f"{DOMAIN}:{port}{{127.0.0.1}}", pebble_root)
