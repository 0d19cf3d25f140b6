"""What the nginx scenario asked for, and helpers shared by its test modules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

SCENARIO = Path(__file__).resolve().parents[1]
ROLE = SCENARIO.parents[1] / "roles" / "sse_nginx"
CONVERGE = SCENARIO / "converge.yml"
# the scenario's input: role defaults, overridden by converge.yml's vars
INPUT = {
    **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
    **yaml.safe_load(CONVERGE.read_text())[0]["vars"],
}
SITE = INPUT["sse_nginx_site_name"]
UPSTREAM = f"{SITE}_backend"
ACCESS_LOG = f"/var/log/nginx/{SITE}_access.log"
LOCATIONS = [
    {
        "path": loc["path"],
        "read_timeout": loc.get("read_timeout", INPUT["sse_nginx_read_timeout"]),
        "send_timeout": loc.get("send_timeout", INPUT["sse_nginx_send_timeout"]),
    }
    for loc in INPUT["sse_nginx_sse_locations"]
]
PATHS = [loc["path"] for loc in LOCATIONS]
HTTPS = "https://127.0.0.1"
SSLYZE = Path(sys.executable).with_name("sslyze")


def podman_host(name: str):
    """A molecule host over `podman exec`: the same container as molecule's ansible://
    host, but a command costs one exec instead of one Ansible module run."""
    return testinfra.get_host(f"podman://{name}")


def inventory_dir() -> str:
    return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


def scenario_host_names() -> list[str]:
    return AnsibleRunner(inventory_dir()).get_hosts("all")


def directives(block: str) -> list[str]:
    """Directive lines of a piece of nginx configuration, comments dropped, spaces squeezed."""
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def location_block(config: str, path: str) -> list[str]:
    pattern = r"^\s*location\s+" + re.escape(path) + r"\s*\{(.*?)^\s*\}"
    match = re.search(pattern, config, re.M | re.S)
    assert match, f"no location {path} in nginx -T"
    return directives(match.group(1))


def effective_config(host) -> str:
    result = host.run("nginx -T")
    assert result.rc == 0, result.stderr
    return result.stdout


def curl(host, args: str):
    return host.run(f"curl {args}")


def tree_listing(host) -> str:
    """Every path under /etc/nginx with type, mode and link target, and every file's sha256."""
    result = host.run(
        "cd /etc/nginx && find . -printf '%y %m %p %l\\n' | sort"
        " && find . -type f -print0 | sort -z | xargs -0 sha256sum"
    )
    assert result.rc == 0, result.stderr
    return result.stdout


def nginx_processes(host) -> tuple[int, frozenset[int], frozenset[int]]:
    """(master pid, serving worker pids, shutting-down worker pids)."""
    master = int(host.file("/run/nginx.pid").content_string.strip())
    out = host.check_output(f"ps -o pid=,args= --ppid {master}")
    serving, leaving = set(), set()
    for line in out.splitlines():
        pid, args = line.strip().split(None, 1)
        if "worker process" in args:
            (leaving if "shutting down" in args else serving).add(int(pid))
    return master, frozenset(serving), frozenset(leaving)


def start_held_stream(host, tag: str, target: str = f"-sk {HTTPS}/notify/events") -> None:
    """A stream through nginx, held open by curl in a transient unit (so it outlives this
    exec session); its output goes to /tmp/held-<tag>.out. `target`: curl's TLS options
    and URL."""
    host.run(f"systemctl stop sse-held-{tag}.service; rm -f /tmp/held-{tag}.out")
    host.check_output(
        f"systemd-run --quiet --collect --unit=sse-held-{tag} "
        f"--property=StandardOutput=file:/tmp/held-{tag}.out "
        f"curl -N --max-time 600 {target}"
    )


def held_stream_state(host, tag: str) -> tuple[bool, str]:
    alive = host.run(f"systemctl is-active sse-held-{tag}.service").stdout.strip() == "active"
    return alive, host.file(f"/tmp/held-{tag}.out").content_string


def stop_held_stream(host, tag: str) -> None:
    host.run(f"systemctl stop sse-held-{tag}.service")


def apply_role(
    extra_vars: dict | None = None, limit: str | None = None
) -> subprocess.CompletedProcess[str]:
    """converge.yml again from the controller, on every host of the scenario at once (or
    the hosts of `limit`), with extra vars on top (molecule's environment supplies
    ANSIBLE_CONFIG)."""
    env = dict(os.environ)
    env.setdefault(
        "ANSIBLE_CONFIG", str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg")
    )
    env["ANSIBLE_ROLES_PATH"] = str(ROLE.parent)
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = ["ansible-playbook", "-i", inventory_dir(), str(CONVERGE)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if limit:
        cmd += ["--limit", limit]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)


def assert_mozilla_intermediate(target: str, ca: Path) -> None:
    """sslyze judges `target` (host:port{ip}) against Mozilla's intermediate configuration,
    with the CA file `ca` trusted: protocols, suites, curves, the certificate and its chain."""
    if not SSLYZE.exists() and shutil.which("sslyze") is None:
        raise AssertionError(f"sslyze not found next to {sys.executable}: run 'make venv'")
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
