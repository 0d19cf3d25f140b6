"""pytest plugin shared by every scenario's testinfra tests.

- On a failed test it prints the target's journal, so a failure in CI can be read
  without logging in to the container.
- `direct_host()` turns molecule's ansible:// host into a podman:// one: the same
  container, reached with `podman exec` instead of one Ansible run per command, which
  makes a test run several times faster.
- `run_playbook()` runs a playbook of the project from the controller against the
  molecule inventory, exactly as a user would, keeping its output for a failure.

Loaded as a plugin by pytest itself: the verifier's environment in
.config/molecule/config.yml sets PYTHONPATH to this folder and PYTEST_PLUGINS=sse_testinfra,
so pytest imports it before any conftest does and rewrites its asserts. A scenario's
conftest imports from it freely and declares nothing. By hand:
`PYTHONPATH=molecule/_shared PYTEST_PLUGINS=sse_testinfra pytest ...`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

JOURNAL_LINES = 80
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[2])
LOGS = PROJECT / ".cache" / "logs"  # each playbook run's output, for reading a failure


def tail(output: str, lines: int = 80) -> str:
    return "\n".join(output.splitlines()[-lines:])


def run_playbook(
    path: str, *args: str, check: bool = True, timeout: float = 900, log_prefix: str = "playbook"
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook PATH (relative to the project) against the molecule inventory, from
    the project folder (its ansible.cfg and roles). Output in .cache/logs/<prefix>-run-NN.log;
    fails on a non-zero exit unless check=False."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", "")
    assert inventory, "MOLECULE_INVENTORY_FILE is not set (run through molecule verify)"
    cmd = ["ansible-playbook", "-i", inventory, path, *args]
    started = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - started
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{log_prefix}-run-{len(list(LOGS.glob(f'{log_prefix}-run-*.log'))) + 1:02d}.log"
    log.write_text(f"$ {shlex.join(cmd)}\n{proc.stdout}")
    print(f"  {shlex.join(cmd[3:])}: exit {proc.returncode} ({took:.0f} s; output: {log})")
    if check:
        assert proc.returncode == 0, f"{shlex.join(cmd)} failed:\n{tail(proc.stdout)}"
    return proc


def direct_host(host):
    """The same target, reached with `podman exec` (it is a podman container)."""
    return testinfra.get_host(f"podman://{host.backend.get_hostname()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    host = getattr(item, "funcargs", {}).get("host")
    if report.when == "call" and report.failed and host is not None:
        journal = host.run(f"journalctl --no-pager -n {JOURNAL_LINES} -o short-precise")
        report.sections.append(("journal (last lines)", journal.stdout + journal.stderr))
    return report


def published_https_port(container: str) -> int:
    """The host port podman publishes for the container's 443 (127.0.0.1 only)."""
    listed = subprocess.run(
        ["podman", "port", container, "443/tcp"], capture_output=True, text=True, check=False
    )
    bindings = listed.stdout.split()
    assert listed.returncode == 0 and bindings, (
        f"container {container} publishes no port for 443/tcp ({listed.stderr.strip()}): "
        "set published_ports for it in its molecule.yml or .config/molecule/config.yml"
    )
    hosts = {binding.rsplit(":", 1)[0] for binding in bindings}
    assert hosts == {"127.0.0.1"}, f"{container} publishes 443 beyond 127.0.0.1: {bindings}"
    return int(bindings[0].rsplit(":", 1)[1])
