"""Changes while a stream is open: a broken one never goes live, a valid one reloads.

The valid change also swaps the self-signed pair for one given on the controller.

The role is applied again from the controller (converge.yml through ansible-playbook
against molecule's inventory, all hosts in one run per change) while curl holds a stream
open through nginx on every host. Afterwards converge.yml is applied once more with its
own variables, so the scenario ends as converged (and `molecule verify` can be repeated).
Runs after test_nginx.py, which checks the converged state.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from nginx_helpers import (
    HTTPS,
    INPUT,
    SITE,
    apply_role,
    curl,
    effective_config,
    held_stream_state,
    nginx_processes,
    podman_host,
    scenario_host_names,
    start_held_stream,
    stop_held_stream,
    tree_listing,
)

BAD_DIRECTIVE = "this_is_not_a_directive on;"
OCSP_URI = x509.UniformResourceIdentifier("http://ocsp.sse.test/")
STAGING = INPUT["sse_nginx_staging_dir"]
SETTLE = 3  # seconds the held streams run before and after each change


@pytest.fixture(scope="session")
def all_hosts() -> dict:
    return {name: podman_host(name) for name in scenario_host_names()}


def change_under_load(all_hosts: dict, tag: str, extra_vars: dict) -> dict:
    """Hold a stream open on every host, apply the change, look again SETTLE s later."""
    before = {}
    for name, host in all_hosts.items():
        before[name] = {"tree": tree_listing(host), "processes": nginx_processes(host)}
        start_held_stream(host, tag)
    time.sleep(SETTLE)
    started = time.monotonic()
    proc = apply_role(extra_vars)
    time.sleep(SETTLE)
    held_for = time.monotonic() - started + SETTLE
    after = {}
    for name, host in all_hosts.items():
        alive, output = held_stream_state(host, tag)
        after[name] = {
            "tree": tree_listing(host),
            "processes": nginx_processes(host),
            "held_alive": alive,
            "held_output": output,
            "served": curl(host, f"-sk -D - -o /dev/null {HTTPS}/").stdout.lower(),
            "live_site": host.file(f"/etc/nginx/conf.d/{SITE}.conf").content_string,
            "staged_site": host.file(f"{STAGING}/conf.d/{SITE}.conf").content_string,
        }
        stop_held_stream(host, tag)
    return {"proc": proc, "before": before, "after": after, "held_for": held_for}


@pytest.fixture(scope="session")
def invalid_change(all_hosts) -> dict:
    return change_under_load(all_hosts, "invalid", {"sse_nginx_extra_directives": [BAD_DIRECTIVE]})


def write_tls_pair(folder: Path, organization: str) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key, on the controller."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        # an OCSP responder (never asked here): the role turns stapling on for it
        .add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, OCSP_URI)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "given.crt", folder / "given.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def served_certificate_subject(host) -> str:
    return host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername localhost < /dev/null 2>/dev/null"
        " | openssl x509 -noout -subject"
    )


@pytest.fixture(scope="session")
def valid_change(all_hosts, invalid_change, tmp_path_factory) -> dict:
    """A valid change after the invalid one: an extra header, a shorter
    worker_shutdown_timeout and a TLS pair given on the controller instead of the
    self-signed one. The converge variables are applied again at the end."""
    run_id = uuid.uuid4().hex[:12]
    cert, key = write_tls_pair(tmp_path_factory.mktemp("tls"), f"sse-scenario-{run_id}")
    extra = {
        "sse_nginx_worker_shutdown_timeout": "2m",
        "sse_nginx_extra_directives": [f"add_header X-SSE-Change {run_id} always;"],
        "sse_nginx_tls_cert": str(cert),
        "sse_nginx_tls_key": str(key),
    }
    result = change_under_load(all_hosts, "valid", extra)
    result["run_id"] = run_id
    result["key_lines"] = [line for line in key.read_text().splitlines() if "-----" not in line]
    result["subjects"] = {name: served_certificate_subject(h) for name, h in all_hosts.items()}
    yield result
    # Back to the converge variables (self-signed mode); the leaf is first made to end in
    # 10 days, so this run must issue the next one from the same CA (renewal).
    ca_before = {name: leaf_near_its_end(h) for name, h in all_hosts.items()}
    restore = apply_role()
    assert restore.returncode == 0, restore.stdout + restore.stderr
    for name, host in all_hosts.items():
        assert "worker_shutdown_timeout 3m;" in effective_config(host)
        assert run_id not in served_certificate_subject(host)
        assert days_left(host, f"/etc/nginx/tls/{SITE}.crt") > 300, "the leaf was not renewed"
        assert ca_fingerprint(host) == ca_before[name], "the CA changed: clients lose trust"


def ca_fingerprint(host) -> str:
    return host.check_output(f"openssl x509 -in /etc/nginx/tls/{SITE}-ca.crt -noout -fingerprint")


def days_left(host, path: str) -> int:
    end = host.check_output(f"openssl x509 -in {path} -noout -enddate").split("=", 1)[1]
    return int(
        host.check_output(f"echo $(( ($(date -d '{end}' +%s) - $(date +%s)) / 86400 ))").strip()
    )


def leaf_near_its_end(host) -> str:
    """Replace the self-signed mode's leaf by one from the same CA that ends in 10 days."""
    tls = "/etc/nginx/tls"
    host.check_output(
        f"openssl req -new -key {tls}/{SITE}.key -subj /CN=localhost -out /tmp/near.csr"
        f" && openssl x509 -req -in /tmp/near.csr -CA {tls}/{SITE}-ca.crt"
        f" -CAkey {tls}/{SITE}-ca.key -CAcreateserial -CAserial /tmp/near.srl -days 10"
        f" -out {tls}/{SITE}.crt && rm -f /tmp/near.csr /tmp/near.srl"
    )
    assert days_left(host, f"{tls}/{SITE}.crt") <= 10
    return ca_fingerprint(host)


def assert_held_stream_survived(result: dict, name: str) -> None:
    after = result["after"][name]
    output = after["held_output"]
    assert after["held_alive"], f"held stream ended: {output!r}"
    assert output.startswith(":ok\n\n")
    # one keepalive a second for the whole time (at least 5), minus some slack
    expected = max(5, int(result["held_for"]) - 3)
    assert output.count(":keepalive\n\n") >= expected, (result["held_for"], output)


def test_invalid_change_fails_quoting_nginx(host, invalid_change):
    proc = invalid_change["proc"]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    name = host.backend.get_hostname()
    assert f"fatal: [{name}]" in out or f"failed: [{name}]" in out, out
    assert "nginx -t rejected the new configuration" in out, out
    assert 'unknown directive "this_is_not_a_directive"' in out, out


def test_invalid_change_leaves_etc_nginx_and_nginx_alone(host, invalid_change):
    name = host.backend.get_hostname()
    before, after = invalid_change["before"][name], invalid_change["after"][name]
    assert after["tree"] == before["tree"]
    # not even a reload: the same master and the same workers
    assert after["processes"][:2] == before["processes"][:2]
    assert after["served"].startswith("http/2 200")
    assert BAD_DIRECTIVE not in after["live_site"]
    # what nginx was given stays in the staging copy, to read
    assert BAD_DIRECTIVE in after["staged_site"]


def test_invalid_change_keeps_held_stream(host, invalid_change):
    assert_held_stream_survived(invalid_change, host.backend.get_hostname())


def test_valid_change_reloads_not_restarts(host, valid_change):
    name = host.backend.get_hostname()
    proc = valid_change["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    before_master, before_workers, _ = valid_change["before"][name]["processes"]
    after_master, after_workers, leaving = valid_change["after"][name]["processes"]
    assert after_master == before_master, "nginx was restarted, not reloaded"
    assert after_workers, "no workers after the reload"
    assert not after_workers & before_workers, "workers were not replaced"
    # an old worker still serves the held stream, shutting down gracefully
    assert leaving & before_workers, (before_workers, after_workers, leaving)
    assert f"x-sse-change: {valid_change['run_id']}" in valid_change["after"][name]["served"]
    assert valid_change["after"][name]["tree"] != valid_change["before"][name]["tree"]


def test_valid_change_installs_the_given_tls_pair(host, valid_change):
    name = host.backend.get_hostname()
    assert f"sse-scenario-{valid_change['run_id']}" in valid_change["subjects"][name]
    key = host.file(f"/etc/nginx/tls/{SITE}-provided.key")
    assert key.mode == 0o600 and key.user == "root"
    # it names an OCSP responder: stapled, through the host's resolvers
    site = valid_change["after"][name]["live_site"]
    assert "ssl_stapling on;" in site and "ssl_stapling_verify on;" in site, site
    assert re.search(r"^\s*resolver [0-9a-fA-F.:\[\] ]+ valid=300s;$", site, re.M), site
    # the key travels by file, its content is never printed
    output = valid_change["proc"].stdout + valid_change["proc"].stderr
    assert not [line for line in valid_change["key_lines"] if line in output]


def test_valid_change_keeps_held_stream(host, valid_change):
    assert_held_stream_survived(valid_change, host.backend.get_hostname())


BUSY_PORT = 8081  # taken by another program when the change asks nginx to listen on it


@pytest.fixture(scope="session")
def unappliable_change(all_hosts, valid_change) -> dict:
    """A change nginx -t accepts but a reload cannot apply: the HTTP port moves to one
    another program holds (nginx -t binds nothing; systemctl reload exits 0 anyway)."""
    for host in all_hosts.values():
        host.check_output(
            f'systemd-run --quiet --collect --unit=sse-busy-port python3 -c "import socket,time;'
            f" s=socket.create_server(('0.0.0.0', {BUSY_PORT})); time.sleep(600)\""
        )
    try:
        yield change_under_load(all_hosts, "unappliable", {"sse_nginx_http_port": BUSY_PORT})
    finally:
        for host in all_hosts.values():
            host.run("systemctl stop sse-busy-port.service")


def test_unappliable_change_fails_with_nginx_cause_and_puts_files_back(host, unappliable_change):
    name = host.backend.get_hostname()
    proc = unappliable_change["proc"]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "nginx did not apply the new configuration" in out, out
    assert f"bind() to 0.0.0.0:{BUSY_PORT} failed (98: Address already in use)" in out, out
    before, after = unappliable_change["before"][name], unappliable_change["after"][name]
    # every file under /etc/nginx byte-identical to before the run; nginx on the old
    # configuration: the same master and workers, still serving HTTPS and the held stream
    assert after["tree"] == before["tree"]
    assert after["processes"][:2] == before["processes"][:2]
    assert after["served"].startswith("http/2 200")
    assert f"listen {BUSY_PORT}" not in after["live_site"]
    assert f"listen {BUSY_PORT}" in after["staged_site"]  # what was refused, to read
    assert_held_stream_survived(unappliable_change, name)
