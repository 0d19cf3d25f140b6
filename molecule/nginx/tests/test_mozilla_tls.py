"""The TLS a client meets, judged from the controller by sslyze against Mozilla's
"intermediate" configuration (https://ssl-config.mozilla.org/), the local CA trusted as a
user would trust it: protocols, cipher suites, curves, the certificate's type, key,
signature, lifespan (at most 366 days) and its chain to the trusted CA.

The port is the one podman publishes for the container's 443, on 127.0.0.1 only. The file
sorts before test_nginx_changes.py, whose changes (a given TLS pair) last to its end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from nginx_helpers import SITE
from sse_testinfra import published_https_port

SSLYZE = Path(sys.executable).with_name("sslyze")


def test_tls_meets_mozilla_intermediate_with_the_local_ca_trusted(host, tmp_path):
    if not SSLYZE.exists() and shutil.which("sslyze") is None:
        raise AssertionError(f"sslyze not found next to {sys.executable}: run 'make venv'")
    container = host.backend.get_hostname()
    ca = tmp_path / "ca.crt"
    copied = subprocess.run(
        ["podman", "cp", f"{container}:/etc/nginx/tls/{SITE}-ca.crt", str(ca)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    target = f"localhost:{published_https_port(container)}{{127.0.0.1}}"
    scan = subprocess.run(
        [str(SSLYZE), "--quiet", "--certinfo", "--certinfo_ca_file", str(ca),
         "--mozilla_config", "intermediate", target],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )  # fmt: skip
    report = scan.stdout + scan.stderr
    # exit status 1 and "FAILED - Not compliant" with the reasons when any check fails
    assert scan.returncode == 0, report[-3000:]
    assert "OK - Compliant." in report, report[-3000:]
