"""Fixtures for the default scenario: the probe inside the target, the service user,
and where a browser on the controller reaches the deployment (the published port)."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sse_testinfra import direct_host, published_https_port

pytest_plugins = ["sse_testinfra"]

ROOT = Path(__file__).resolve().parents[3]
PROBE_HOME = "/opt/sseprobe"
# The probe's package as it lies in the collection; `python3 -m` from PROBE_HOME finds it
# (namespace packages: no __init__.py, no venv, no sys.path edit on the target).
PROBE_PACKAGE = "ansible_collections/sse/stack/plugins/module_utils"
PROBE_MODULE = PROBE_PACKAGE.replace("/", ".") + ".sseprobe_cli"
PROBE_COMMAND = f"cd {PROBE_HOME} && python3 -m {PROBE_MODULE}"
USER = "sse"
UNIT = "sse-backend"
CACERT = "/etc/nginx/tls/sse-ca.crt"  # the local CA sse_nginx issues (self-signed mode)
PUBLIC_URL = "https://localhost/notify/events"
BACKEND_URL = "http://127.0.0.1:8000/notify/events"
# values that need quoting, given to the role by molecule.yml (the token is one of them)
ENV_VALUES = json.loads((Path(__file__).resolve().parents[1] / "env_values.json").read_text())
PUBLISH_TOKEN = ENV_VALUES["sse_backend_publish_token"]
KEEPALIVE = 2


@pytest.fixture
def host(host):
    return direct_host(host)


@dataclass
class Probe:
    """`sseprobe` run inside the target: the same code the sse_verify role uses."""

    host: object

    def check(self, url: str, *args: str) -> tuple[int, dict]:
        cmd = (
            f"{PROBE_COMMAND} check {url} --json "
            f"--keepalive-interval {KEEPALIVE} --tolerance 1 " + " ".join(args)
        )
        result = self.host.run(cmd)
        assert result.stdout.strip(), f"no output from {cmd}: {result.stderr}"
        return result.rc, json.loads(result.stdout)


def put_file(host, path: str, data: bytes) -> None:
    """Write a file on the target (base64 through the shell: no quoting to get wrong)."""
    encoded = base64.b64encode(data).decode()
    host.run_expect(
        [0],
        f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && "
        f"echo {encoded} | base64 -d > {shlex.quote(path)} && chmod 0755 {shlex.quote(path)}",
    )


def python_command(script: str) -> str:
    """A shell command running a Python script on the target."""
    return f"echo {base64.b64encode(script.encode()).decode()} | base64 -d | python3 -"


@pytest.fixture
def probe(host) -> Probe:
    # Ship the probe the way a user without the package would run it: its files in their
    # package folder, run with the target's bare python3 (PROBE_COMMAND).
    for path in sorted((ROOT / "collections" / PROBE_PACKAGE).glob("sseprobe*.py")):
        put_file(host, f"{PROBE_HOME}/{PROBE_PACKAGE}/{path.name}", path.read_bytes())
    return Probe(host)


@pytest.fixture
def user_systemctl(host):
    uid = host.user(USER).uid

    def run(*args: str):
        return host.run(
            f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user "
            + " ".join(args)
        )

    return run


@pytest.fixture
def main_pid(user_systemctl):
    def read() -> int:
        return int(user_systemctl("show", "-p", "MainPID", "--value", f"{UNIT}.service").stdout)

    return read


@dataclass(frozen=True)
class E2ETarget:
    """The deployment as a browser on the controller sees it: nginx through the port
    the container publishes on 127.0.0.1, trusting the certificate the role generated."""

    container: str
    base_url: str
    cafile: Path
    token: str
    keepalive: float


@pytest.fixture
def e2e_target(host, tmp_path) -> E2ETarget:
    """Defaults: the molecule platform behind `host`. SSE_E2E_PORT, SSE_E2E_TOKEN,
    SSE_E2E_KEEPALIVE and SSE_E2E_CACERT point the test at another deployment, e.g.
    the demo: `pytest --hosts=podman://sse-demo` with SSE_E2E_TOKEN=demo-publish-token
    SSE_E2E_KEEPALIVE=30."""
    container = host.backend.get_hostname()
    port = int(os.environ.get("SSE_E2E_PORT") or published_https_port(container))
    cafile = os.environ.get("SSE_E2E_CACERT")
    if not cafile:
        cafile = tmp_path / "sse.crt"
        copied = subprocess.run(
            ["podman", "cp", f"{container}:{CACERT}", str(cafile)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert copied.returncode == 0, f"cannot copy {CACERT} from {container}: {copied.stderr}"
    return E2ETarget(
        container=container,
        base_url=f"https://localhost:{port}",
        cafile=Path(cafile),
        token=os.environ.get("SSE_E2E_TOKEN") or PUBLISH_TOKEN,
        keepalive=float(os.environ.get("SSE_E2E_KEEPALIVE") or KEEPALIVE),
    )
