"""The stream as browsers reach it: `sseprobe check --http2` from the controller.

Browsers open `/notify/events` over HTTP/2 (TLS ALPN h2); the verify role's module speaks
HTTP/1.1. These tests hold the stream over HTTP/2 from the controller (this host) against
nginx's HTTPS port that the faults container publishes on 127.0.0.1, trusting the
deployment's CA as a client would, and inject faults with test_faults.py's own helper
(restored as there: proxy.yml rewrites the hand-edited site).

- healthy: every check passes, and nginx logs the request as HTTP/2.0;
- proxy_read_timeout 1s: nginx resets the HTTP/2 stream between two keepalives, and the
  probe fails `stream_closed` (RST_STREAM);
- proxy buffering on (the incident's cause): nginx holds back the stream from an HTTP/1.1
  client over TLS only; over HTTP/2 it still writes every frame at once (nginx 1.22 and
  1.26, measured by hand), so a browser sees a healthy stream. Both probes run against the
  same fault: the HTTP/1.1 one fails `first_byte`, the HTTP/2 one passes. If nginx ever
  buffers HTTP/2 streams too, this test says so.

Cost: four 5 s holds, two injected faults, two proxy.yml runs (about 90 s in all).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from conftest import run_on_target
from sse_testinfra import published_https_port
from test_faults import edit_sse_location

PACKAGE = "ansible_collections.sse.stack.plugins.module_utils"
# as .config/molecule/config.yml's group_vars: the CA the sse_nginx role issues, the log
CA = "/etc/nginx/tls/sse-ca.crt"
ACCESS_LOG = "/var/log/nginx/sse_access.log"
PATH = "/notify/events"
# the scenario's timings: keepalives every 2 s, tolerance 2 s, hold 5 s (sse_verify_hold)
TIMINGS = ["--hold", "5", "--keepalive-interval", "2", "--tolerance", "2"]


def probe(host, tmp_path: Path, http2: bool = True) -> tuple[int, dict[str, Any], str]:
    """`sseprobe check --http2 --json` (or, to compare, without --http2) from the
    controller; (exit code, result, probe id)."""
    ca = tmp_path / "sse-ca.crt"
    ca.write_text(host.file(CA).content_string)  # trust the deployment's CA, as a user would
    probe_id = uuid.uuid4().hex
    cmd = [
        *(sys.executable, "-m", f"{PACKAGE}.sseprobe_cli", "check"),
        # the container's 443 as published on 127.0.0.1 (molecule.yml's published_ports)
        f"https://localhost:{published_https_port(host.backend.get_hostname())}{PATH}",
        *(["--http2"] if http2 else []),
        *("--json", "--cacert", str(ca), *TIMINGS),
        *("--header", f"X-SSEProbe-Id: {probe_id}"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode in (0, 1), f"{shlex.join(cmd)}: exit {proc.returncode}\n{proc.stderr}"
    result = json.loads(proc.stdout)
    failures = "".join(f"\n    {f['check']}: {f['message']}" for f in result["failures"])
    protocol = "HTTP/2" if http2 else "HTTP/1.1"
    print(f"  [{protocol}] exit {proc.returncode}, ok {result['ok']}{failures}")
    return proc.returncode, result, probe_id


def access_log_line(host, probe_id: str) -> str:
    """nginx's line for the probe's request (written when the stream ends)."""
    return run_on_target(
        host,
        f"for i in 1 2 3 4 5 6 7 8 9 10; do grep -F 'probe=\"{probe_id}\"' {ACCESS_LOG}"
        " && exit 0; sleep 1; done; exit 1",
    )


def assert_http2_passes(host, tmp_path: Path) -> None:
    rc, result, probe_id = probe(host, tmp_path)
    assert rc == 0 and result["ok"] is True, result["failures"]
    assert set(result["checks"].values()) == {"pass"}, result["checks"]
    assert result["first_line"] == ":ok" and result["keepalives"] >= 1
    # nginx saw the request over HTTP/2, and held it for the whole hold with status 200
    line = access_log_line(host, probe_id)
    assert f"GET {PATH} HTTP/2.0" in line and "status=200" in line, line


def test_http2_probe_passes_on_the_healthy_deployment(host, tmp_path: Path) -> None:
    assert_http2_passes(host, tmp_path)


def test_http2_probe_fails_on_short_read_timeout(host, playbook, tmp_path: Path) -> None:
    """nginx gives up on the idle upstream between two keepalives and resets the stream."""
    try:
        edit_sse_location(
            host,
            r"s/proxy_read_timeout [^;]*;/proxy_read_timeout 1s;/",
            "proxy_read_timeout 1s;",
        )
        rc, result, _ = probe(host, tmp_path)
        assert rc == 1 and result["ok"] is False
        failed = {f["check"] for f in result["failures"]}
        assert "stream_closed" in failed and failed <= {"stream_closed", "keepalive"}, failed
        message = next(f["message"] for f in result["failures"] if f["check"] == "stream_closed")
        assert "RST_STREAM" in message, message
    finally:
        playbook("playbooks/proxy.yml")  # the role rewrites the hand-edited site and reloads
    assert_http2_passes(host, tmp_path)


def test_proxy_buffering_holds_back_http11_only(host, playbook, tmp_path: Path) -> None:
    """The incident's buffering, seen by both protocols at once: the HTTP/1.1 probe gets
    nothing (first_byte), the HTTP/2 probe the whole stream."""
    try:
        edit_sse_location(
            host,
            r"s/^\( *\)proxy_buffering off;/\1proxy_buffering on;\n"
            r"\1proxy_ignore_headers X-Accel-Buffering;/",
            "proxy_ignore_headers X-Accel-Buffering;",
        )
        rc, result, _ = probe(host, tmp_path, http2=False)
        assert rc == 1 and {f["check"] for f in result["failures"]} == {"first_byte"}, result
        rc, result, _ = probe(host, tmp_path)
        assert rc == 0 and result["ok"] is True, (
            "nginx now holds back the HTTP/2 stream under proxy_buffering too: the browser"
            f" tests and this file's premise change; failures: {result['failures']}"
        )
        assert result["first_line"] == ":ok" and result["keepalives"] >= 1
    finally:
        playbook("playbooks/proxy.yml")  # the role rewrites the hand-edited site and reloads
    assert_http2_passes(host, tmp_path)
