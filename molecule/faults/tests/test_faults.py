"""Every verification check can fail, under its own name, and passes again without the fault.

On the converged (healthy) deployment each test injects one of the incident's causes, runs
playbooks/verify.yml from the controller exactly as after a deploy, and reads the check
names from the JSON report it writes (sse_verify_report_dir), not from console text. Then
it removes the fault the way an operator would (re-running a playbook, or restarting the
service) and proves verify.yml passes again. The tests run in file order; each one starts
from, and leaves behind, a healthy deployment (its restore runs even when it fails).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
HOST = "faults-debian12"  # the report is <report dir>/<inventory_hostname>.json
NO_OK_APP = Path(__file__).resolve().parents[1] / "files" / "no_ok_app"
PLAYBOOK_TIMEOUT = 900

# On the target (sse_nginx and sse_backend defaults)
SITE_CONF = "/etc/nginx/conf.d/sse.conf"
SSE_LOCATION = r"/location \/notify\/events {/,/}/"  # sed address: the SSE location block
BACKEND_USER = "sse"
BACKEND_CURRENT = "/var/lib/sse/sse-backend/current"
BACKEND_SERVICE = "sse-backend.service"


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


def _tail(output: str, lines: int = 60) -> str:
    return "\n".join(output.splitlines()[-lines:])


@pytest.fixture(scope="module")
def playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run playbooks/<name> against the molecule inventory; fail on a non-zero exit."""
    assert INVENTORY, "MOLECULE_INVENTORY_FILE is not set (run through molecule verify)"

    def run(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["ansible-playbook", "-i", INVENTORY, f"playbooks/{name}", *args]
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=PROJECT,  # so ansible.cfg and its roles_path apply
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )
        print(
            f"  {shlex.join(cmd[3:])}: exit {proc.returncode} ({time.monotonic() - started:.0f} s)"
        )
        if check:
            assert proc.returncode == 0, f"{shlex.join(cmd)} failed:\n{_tail(proc.stdout)}"
        return proc

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
            "verify.yml", "-e", f"sse_verify_report_dir={report_dir}", *args, check=False
        )
        report_file = report_dir / f"{HOST}.json"
        assert report_file.is_file(), f"verify.yml wrote no {report_file}:\n{_tail(proc.stdout)}"
        result = Verification(proc.returncode, json.loads(report_file.read_text()), proc.stdout)
        print(f"  [{label}] {result.summary()}")
        return result

    return run


def assert_fails(result: Verification, expected: str, also: Collection[str] = ()) -> None:
    """verify.yml failed, naming `expected` (and no checks other than it and `also`)."""
    assert result.rc != 0, f"verify.yml passed despite the fault:\n{_tail(result.output)}"
    assert result.report["ok"] is False
    assert expected in result.checks, f"expected check {expected!r}: {result.summary()}"
    unexpected = result.checks - {expected} - set(also)
    assert not unexpected, f"unexpected checks {sorted(unexpected)}: {result.summary()}"


def assert_passes(result: Verification) -> None:
    assert result.rc == 0 and result.report["ok"] is True, (
        f"verify.yml still fails without the fault: {result.summary()}\n{_tail(result.output)}"
    )
    assert result.report["failures"] == []


def run_on_target(host, script: str) -> str:
    result = host.run("sh -euc " + shlex.quote(script))
    assert result.rc == 0, f"{script}\nexit {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout


def edit_sse_location(host, sed_command: str, expect: str) -> None:
    """Hand-edit the live site's SSE location (as in the incident), test it and reload."""
    run_on_target(
        host,
        f"sed -i {shlex.quote(SSE_LOCATION + ' ' + sed_command)} {SITE_CONF}\n"
        f"grep -qF {shlex.quote(expect)} {SITE_CONF}\n"
        "nginx -t -q\n"
        "systemctl reload nginx\n",
    )


def test_baseline_verification_passes(host, verify) -> None:
    assert_passes(verify("baseline"))


def test_proxy_buffering_left_on(host, verify, playbook) -> None:
    """nginx buffers the stream: with the app's "X-Accel-Buffering: no" ignored, the tiny
    comments never fill a buffer, so not even the response head reaches the client."""
    try:
        edit_sse_location(
            host,
            r"s/^\( *\)proxy_buffering off;/\1proxy_buffering on;\n"
            r"\1proxy_ignore_headers X-Accel-Buffering;/",
            "proxy_ignore_headers X-Accel-Buffering;",
        )
        result = verify("proxy_buffering on")
        assert_fails(result, "first_byte", {"access_log"})
        # and nginx logged the incident's 499 for the stream that got nothing
        assert "access_log" in result.checks, result.summary()
    finally:
        playbook("proxy.yml")  # the role rewrites the hand-edited site and reloads
    assert_passes(verify("after proxy.yml"))


def test_read_timeout_shorter_than_keepalive(host, verify, playbook) -> None:
    """nginx gives up on the idle upstream between two keepalives and cuts the stream."""
    try:
        edit_sse_location(
            host,
            r"s/proxy_read_timeout [^;]*;/proxy_read_timeout 1s;/",
            "proxy_read_timeout 1s;",
        )
        assert_fails(verify("proxy_read_timeout 1s"), "stream_closed", {"access_log", "keepalive"})
    finally:
        playbook("proxy.yml")
    assert_passes(verify("after proxy.yml"))


def test_backend_without_keepalives(host, verify, playbook) -> None:
    """The previous implementation: the stream opens with :ok, then stays silent."""
    no_keepalives = json.dumps({"sse_backend_env": {"SSE_KEEPALIVE_INTERVAL": "3600"}})
    try:
        playbook("backend.yml", "-e", no_keepalives)
        assert_fails(verify("keepalive interval 3600 s"), "keepalive")
    finally:
        playbook("backend.yml")
    assert_passes(verify("after backend.yml"))


def test_backend_without_ok(host, verify, playbook, tmp_path) -> None:
    """A release whose stream starts without :ok (everything else about it is healthy)."""
    # a copy: pip builds a project folder in place (build/, *.egg-info)
    source = tmp_path / "no_ok_app"
    shutil.copytree(NO_OK_APP, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    release = ["-e", "sse_backend_version=fault-no-ok"]
    try:
        app = ["-e", f"sse_backend_source={source}", "-e", "sse_backend_app=no_ok_app:app"]
        playbook("backend.yml", *app, *release)
        # verify expects the release just deployed, so only the stream's first line fails
        assert_fails(verify("release without :ok", *release), "first_comment")
    finally:
        playbook("backend.yml")  # the default release: current switches back, restart
    assert_passes(verify("after backend.yml"))


def test_code_changed_without_restart(host, verify) -> None:
    """A naive deploy script: new code installed into the running release, no restart
    (and not even the release marker touched: the changed venv files give it away)."""
    uid = host.user(BACKEND_USER).uid
    try:
        run_on_target(
            host,
            # a second later, so the release is clearly written after the process started
            f"sleep 1; cd {BACKEND_CURRENT}\n"
            "venv/bin/pip install --quiet --disable-pip-version-check --no-index"
            " --find-links wheelhouse --force-reinstall wheelhouse/*.whl\n",
        )
        result = verify("reinstalled, not restarted")
        assert_fails(result, "backend_release")
        message = next(
            f["message"] for f in result.report["failures"] if f["check"] == "backend_release"
        )
        assert "stale code" in message, message
    finally:
        run_on_target(
            host,
            f"runuser -u {BACKEND_USER} -- env XDG_RUNTIME_DIR=/run/user/{uid}"
            f" systemctl --user restart {BACKEND_SERVICE}",
        )
    assert_passes(verify("after restart"))
