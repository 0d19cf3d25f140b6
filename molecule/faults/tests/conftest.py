"""Fixtures of the faults scenario: playbooks run from the controller against the molecule
inventory (sse_testinfra.run_playbook), playbooks/verify.yml with its JSON report, and the
target reached with `podman exec`."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sse_testinfra import direct_host, run_playbook, tail

PLAYBOOK_TIMEOUT = 900
HOST = "faults-debian12"  # the report is <report dir>/<inventory_hostname>.json
FILES = Path(__file__).resolve().parents[1] / "files"
# the backend role alone, no verification gate (files/backend_role_only.yml)
BACKEND_ROLE_ONLY = "molecule/faults/files/backend_role_only.yml"

# On the target (sse_nginx and sse_backend defaults)
SITE_CONF = "/etc/nginx/conf.d/sse.conf"
BACKEND_USER = "sse"
BACKEND_ROOT = "/var/lib/sse/sse-backend"
BACKEND_CURRENT = f"{BACKEND_ROOT}/current"
BACKEND_SERVICE = "sse-backend.service"
ENV_FILE = "/var/lib/sse/.config/sse-backend/env"


@pytest.fixture
def host(host):
    return direct_host(host)


@dataclass
class Verification:
    rc: int
    report: dict[str, Any]
    output: str

    @property
    def checks(self) -> set[str]:
        return {f["check"] for f in self.report["failures"]}

    def summary(self) -> str:
        failures = self.report["failures"]
        return f"exit {self.rc}, ok {self.report['ok']}" + "".join(
            f"\n    {f['check']}: {f['message']}" for f in failures
        )


@pytest.fixture(scope="session")
def playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a playbook (a path in the project: site.yml, playbooks/backend.yml, ...) against
    the molecule inventory; fail on a non-zero exit unless check=False."""

    def run(path: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_playbook(path, *args, check=check, timeout=PLAYBOOK_TIMEOUT, log_prefix="faults")

    return run


@pytest.fixture
def verify(
    playbook: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> Callable[..., Verification]:
    """Run playbooks/verify.yml with a JSON report and return its exit code and report."""
    runs = iter(range(1, 100))

    def run(label: str, *args: str) -> Verification:
        report_dir = tmp_path / f"verify-{next(runs)}"
        report_dir.mkdir()
        proc = playbook(
            "playbooks/verify.yml", "-e", f"sse_verify_report_dir={report_dir}", *args, check=False
        )
        report_file = report_dir / f"{HOST}.json"
        assert report_file.is_file(), f"verify.yml wrote no {report_file}:\n{tail(proc.stdout)}"
        result = Verification(proc.returncode, json.loads(report_file.read_text()), proc.stdout)
        print(f"  [{label}] {result.summary()}")
        return result

    return run


def assert_fails(result: Verification, expected: str, also: Collection[str] = ()) -> None:
    """verify.yml failed, naming `expected` (and no checks other than it and `also`)."""
    assert result.rc != 0, f"verify.yml passed despite the fault:\n{tail(result.output)}"
    assert result.report["ok"] is False
    assert expected in result.checks, f"expected check {expected!r}: {result.summary()}"
    unexpected = result.checks - {expected} - set(also)
    assert not unexpected, f"unexpected checks {sorted(unexpected)}: {result.summary()}"


def assert_passes(result: Verification) -> None:
    assert result.rc == 0 and result.report["ok"] is True, (
        f"verify.yml still fails without the fault: {result.summary()}\n{tail(result.output)}"
    )
    assert result.report["failures"] == []


def run_on_target(host, script: str) -> str:
    result = host.run("sh -euc " + shlex.quote(script))
    assert result.rc == 0, f"{script}\nexit {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout
