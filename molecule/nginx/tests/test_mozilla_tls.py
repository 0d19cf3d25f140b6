"""The TLS a client meets, judged from the controller by sslyze against Mozilla's
"intermediate" configuration (https://ssl-config.mozilla.org/), the local CA trusted as a
user would trust it: protocols, cipher suites, curves, the certificate's type, key,
signature, lifespan (at most 366 days) and its chain to the trusted CA.

tests/test_nginx_tls_acme.py runs the same check on a certificate issued by Pebble (ACME).
The port is the one podman publishes for the container's 443, on 127.0.0.1 only. The file
sorts before test_nginx_changes.py, whose changes (a given TLS pair) last to its end.
"""

from __future__ import annotations

import subprocess

from nginx_helpers import SITE, assert_mozilla_intermediate
from sse_testinfra import published_https_port


def test_tls_meets_mozilla_intermediate_with_the_local_ca_trusted(host, tmp_path):
    container = host.backend.get_hostname()
    ca = tmp_path / "ca.crt"
    copied = subprocess.run(
        ["podman", "cp", f"{container}:/etc/nginx/tls/{SITE}-ca.crt", str(ca)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    assert_mozilla_intermediate(f"localhost:{published_https_port(container)}{{127.0.0.1}}", ca)
