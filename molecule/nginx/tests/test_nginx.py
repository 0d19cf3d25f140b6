"""nginx (role sse_nginx) in front of the stand-in SSE backend of prepare.yml, as converged.

The effective configuration (`nginx -T`) of every SSE location, and live through nginx:
the stream (first bytes at once, keepalives keep coming), TLS, HTTP/2, the redirect and
the access log. Changes under load are in test_nginx_changes.py (runs after this module).
"""

from __future__ import annotations

import re
import uuid

import pytest
from nginx_helpers import (
    ACCESS_LOG,
    HTTPS,
    INPUT,
    LOCATIONS,
    PATHS,
    SITE,
    UPSTREAM,
    curl,
    directives,
    effective_config,
    location_block,
    nginx_processes,
)

# worker_rlimit_nofile 0 (the default): derived, worker_connections + the role's margin
RLIMIT = INPUT["sse_nginx_worker_rlimit_nofile"] or INPUT["sse_nginx_worker_connections"] + 1024


def sse_location_directives(loc: dict) -> list[str]:
    """Every directive an SSE location must carry (as `nginx -T` prints them)."""
    return [
        f"proxy_pass http://{UPSTREAM};",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection '';",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Last-Event-ID $http_last_event_id;",
        "proxy_buffering off;",
        f"proxy_buffer_size {INPUT['sse_nginx_proxy_buffer_size']};",
        "proxy_cache off;",
        f"proxy_read_timeout {loc['read_timeout']};",
        f"proxy_send_timeout {loc['send_timeout']};",
        "gzip off;",
        "add_header X-Accel-Buffering no always;",
        "add_header Cache-Control no-cache always;",
    ]


# --- nginx itself ------------------------------------------------------------------------


def test_nginx_enabled_running_and_config_valid(host):
    nginx = host.service("nginx")
    assert nginx.is_enabled
    assert nginx.is_running
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


def test_role_owns_nginx_conf_with_relative_includes(host):
    conf = directives(host.file("/etc/nginx/nginx.conf").content_string)
    assert "include mime.types;" in conf
    assert "include conf.d/*.conf;" in conf
    assert not [line for line in conf if "sites-enabled" in line]
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    site = host.file(f"/etc/nginx/conf.d/{SITE}.conf")
    assert site.is_file and not site.is_symlink


def test_main_context(host):
    conf = directives(effective_config(host))
    for line in (
        "worker_processes auto;",
        f"worker_rlimit_nofile {RLIMIT};",
        f"worker_shutdown_timeout {INPUT['sse_nginx_worker_shutdown_timeout']};",
        f"worker_connections {INPUT['sse_nginx_worker_connections']};",
        "server_tokens off;",
    ):
        assert line in conf, line
    log_format = " ".join(line for line in conf if "log_format sse_timed" in line)
    assert log_format, "no log_format sse_timed"
    full = re.search(r"log_format sse_timed(.*?);\n", effective_config(host), re.S)
    assert full
    for variable in (
        "$request_time",
        "$upstream_response_time",
        "$upstream_status",
        "$status",
        "$upstream_addr",
        'probe="$http_x_sseprobe_id"',
    ):
        assert variable in full.group(1), variable


def test_workers_got_the_file_limit(host):
    _, serving, _ = nginx_processes(host)
    limit = RLIMIT
    for pid in serving:
        limits = host.file(f"/proc/{pid}/limits").content_string
        assert re.search(rf"Max open files\s+{limit}\s+{limit}", limits), limits


@pytest.mark.parametrize("loc", LOCATIONS, ids=PATHS)
def test_sse_location_carries_every_directive(host, loc):
    block = location_block(effective_config(host), loc["path"])
    missing = [line for line in sse_location_directives(loc) if line not in block]
    assert not missing, f"location {loc['path']} lacks {missing}; it has {block}"
    assert "proxy_buffering on;" not in block


def test_nothing_strips_last_event_id(host):
    config = directives(effective_config(host))
    assert "proxy_pass_request_headers off;" not in config
    assert not [line for line in config if re.match(r"proxy_set_header Last-Event-ID ('')?;", line)]
    assert not [line for line in config if line.startswith("proxy_hide_header Last-Event-ID")]


def test_http2_syntax_matches_the_nginx_version(host):
    version = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", host.run("nginx -v").stderr)
    assert version
    conf = directives(effective_config(host))
    port = INPUT["sse_nginx_https_port"]
    if tuple(int(part) for part in version.groups()) >= (1, 25, 1):
        assert f"listen {port} ssl;" in conf and "http2 on;" in conf
    else:
        assert f"listen {port} ssl http2;" in conf


# --- the stream through nginx ------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["--http1.1", "--http2"])
@pytest.mark.parametrize("path", PATHS)
def test_ok_arrives_at_once(host, path, protocol):
    # 1 s is less than one keepalive period: a buffering proxy shows nothing by then
    result = curl(host, f"-sk -N {protocol} --max-time 1 {HTTPS}{path}")
    assert result.stdout.startswith(":ok"), (result.rc, result.stdout, result.stderr)


@pytest.mark.parametrize("path", PATHS)
def test_keepalives_keep_coming(host, path):
    result = curl(host, f"-sk -N --max-time 3.5 {HTTPS}{path}")
    assert result.stdout.startswith(":ok\n\n")
    assert result.stdout.count(":keepalive\n\n") >= 2, result.stdout


def test_sse_response_headers(host):
    result = curl(host, f"-sk -N -D - -o /dev/null --max-time 1 {HTTPS}/notify/events")
    headers = result.stdout.lower()
    assert "content-type: text/event-stream" in headers
    assert "x-accel-buffering: no" in headers
    assert "cache-control: no-cache" in headers
    assert "content-length" not in headers


def test_backend_sees_forwarded_headers_and_last_event_id_once(host):
    result = curl(host, f"-sk -N --max-time 1 -H 'Last-Event-ID: 42' '{HTTPS}/notify/events?echo'")
    seen = [line[3:] for line in result.stdout.splitlines() if line.startswith(":h ")]
    assert seen.count("last-event-id: 42") == 1, seen
    assert "x-forwarded-proto: https" in seen
    assert "x-real-ip: 127.0.0.1" in seen
    assert "x-forwarded-for: 127.0.0.1" in seen
    assert "host: 127.0.0.1" in seen
    assert not [h for h in seen if h.startswith("connection:")], seen


def test_other_paths_are_proxied(host):
    assert curl(host, f"-sk {HTTPS}/").stdout.strip() == "hello"


def test_access_log_finds_the_probe(host):
    probe = uuid.uuid4().hex
    assert curl(host, f"-sk -H 'X-SSEProbe-Id: {probe}' {HTTPS}/").stdout.strip() == "hello"
    lines = [line for line in host.file(ACCESS_LOG).content_string.splitlines() if probe in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f'probe="{probe}"' in line
    assert "status=200" in line
    assert 'ustatus="200"' in line
    assert 'uaddr="127.0.0.1:8000"' in line
    assert re.search(r'rt=\d+\.\d{3} urt="\d+\.\d{3}"', line), line


# --- TLS, HTTP/2, redirect, tokens ------------------------------------------------------


def test_http_redirects_to_https(host):
    result = curl(
        host, "-s -o /dev/null -w '%{http_code} %{redirect_url}' 'http://127.0.0.1/a?b=1'"
    )
    assert result.stdout == "301 https://127.0.0.1/a?b=1"


def test_certificate_verifies_with_the_published_ca_file(host):
    # sse_nginx_host_ca_file (converge.yml asserts its value)
    for url in ("https://localhost/", "https://127.0.0.1/"):
        result = curl(host, f"-s --cacert /etc/nginx/tls/{SITE}-ca.crt {url}")
        assert result.stdout.strip() == "hello", (url, result.stderr)
    key = host.file(f"/etc/nginx/tls/{SITE}.key")
    assert key.mode == 0o600 and key.user == "root"


def x509_text(host, path: str) -> str:
    return host.check_output(f"openssl x509 -in {path} -noout -text")


def test_self_signed_mode_is_a_local_ca_and_a_leaf(host):
    # A CA:TRUE end-entity certificate is refused by Firefox even when trusted
    # (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY): the leaf is CA:FALSE, for serverAuth.
    leaf, ca = f"/etc/nginx/tls/{SITE}.crt", f"/etc/nginx/tls/{SITE}-ca.crt"
    leaf_text, ca_text = x509_text(host, leaf), x509_text(host, ca)
    assert "CA:FALSE" in leaf_text and "CA:TRUE" not in leaf_text, leaf_text
    assert "TLS Web Server Authentication" in leaf_text, leaf_text
    assert "DNS:localhost" in leaf_text and "IP Address:127.0.0.1" in leaf_text, leaf_text
    assert "CA:TRUE" in ca_text and "Certificate Sign" in ca_text, ca_text
    assert host.run(f"openssl verify -CAfile {ca} {leaf}").rc == 0
    # at most 397 days (browsers accept 398), from the dates openssl prints
    dates = {
        field: host.check_output(f"openssl x509 -in {leaf} -noout -{field}date").split("=", 1)[1]
        for field in ("start", "end")
    }
    days = host.check_output(
        f"echo $(( ($(date -d '{dates['end']}' +%s) - $(date -d '{dates['start']}' +%s)) / 86400 ))"
    )
    assert int(days) <= 397, days
    for key in (f"/etc/nginx/tls/{SITE}.key", f"/etc/nginx/tls/{SITE}-ca.key"):
        assert host.file(key).mode == 0o600 and host.file(key).user == "root", key


def s_client(host, option: str):
    # SECLEVEL=0 lets the client offer old protocols: a refusal is then the server's
    return host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername localhost {option}"
        " -cipher 'DEFAULT:@SECLEVEL=0' < /dev/null"
    )


def test_tls_1_1_refused_by_the_server(host):
    result = s_client(host, "-tls1_1")
    assert result.rc != 0
    assert "alert protocol version" in result.stdout + result.stderr


@pytest.mark.parametrize("version", ["1_2", "1_3"])
def test_tls_1_2_and_1_3_accepted(host, version):
    result = s_client(host, f"-tls{version}")
    assert result.rc == 0, result.stderr
    protocol = "TLSv" + version.replace("_", ".")
    assert f"New, {protocol}, Cipher is" in result.stdout, result.stdout


def test_http2_negotiated(host):
    result = curl(host, f"--http2 -sk -o /dev/null -w '%{{http_version}}' {HTTPS}/")
    assert result.stdout == "2"


@pytest.mark.parametrize("url", [f"{HTTPS}/", "http://127.0.0.1/"])
def test_no_version_in_server_header(host, url):
    headers = curl(host, f"-skI {url}").stdout.lower()
    server = re.search(r"^server: (.*?)\r?$", headers, re.M)
    assert server and server.group(1) == "nginx", headers


# --- the TLS block: suites, stapling, HTTP/2 streams, the page's headers ---------------


def test_no_dhe_suite_without_a_dhparam(host):
    config = effective_config(host)
    assert "ssl_dhparam" not in config
    ciphers = re.search(r"^\s*ssl_ciphers\s+(\S+);", config, re.M)
    assert ciphers, config
    assert "DHE-" not in ciphers.group(1).replace("ECDHE-", ""), ciphers.group(1)


def test_no_stapling_for_a_certificate_without_responder(host):
    # the local CA's leaf names no OCSP responder (test_nginx_changes.py: a given one does)
    assert "ssl_stapling" not in effective_config(host)


# The server's first HTTP/2 frame is its SETTINGS: print SETTINGS_MAX_CONCURRENT_STREAMS
# (id 3) from it (curl 7.88 of Debian 12 does not show it)
H2_SETTINGS = """
import socket, ssl, struct
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443)), server_hostname="x") as s:
    s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    head = b""
    while len(head) < 9: head += s.recv(9 - len(head))
    size, kind = int.from_bytes(head[:3], "big"), head[3]
    body = b""
    while len(body) < size: body += s.recv(size - len(body))
    assert kind == 4, kind
    print(dict(struct.unpack(">HI", body[i:i + 6]) for i in range(0, size, 6)).get(3))
"""


def test_http2_stream_cap_is_announced(host):
    result = host.run(f"python3 -c '{H2_SETTINGS}'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == str(INPUT["sse_nginx_http2_max_concurrent_streams"])


def test_page_security_headers(host):
    headers = curl(host, f"-sk -D - -o /dev/null {HTTPS}/notify/").stdout.lower()
    assert "x-content-type-options: nosniff" in headers, headers
    policy = INPUT["sse_nginx_content_security_policy"].lower()
    assert f"content-security-policy: {policy}\r\n" in headers, headers
