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
import shlex
import shutil

from conftest import (
    BACKEND_CURRENT,
    BACKEND_ROLE_ONLY,
    BACKEND_SERVICE,
    BACKEND_USER,
    FILES,
    SITE_CONF,
    assert_fails,
    assert_passes,
    run_on_target,
)

NO_OK_APP = FILES / "no_ok_app"
SSE_LOCATION = r"/location \/notify\/events {/,/}/"  # sed address: the SSE location block


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
        playbook("playbooks/proxy.yml")  # the role rewrites the hand-edited site and reloads
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
        playbook("playbooks/proxy.yml")
    assert_passes(verify("after proxy.yml"))


# The two backend faults below are deployed with the backend role alone (no verification
# gate, as a script that only installs and restarts): playbooks/backend.yml would verify
# the release and go back on its own (test_releases.py). The backend.yml that removes each
# fault verifies the stream through nginx itself before it passes.


def test_backend_without_keepalives(host, verify, playbook) -> None:
    """The previous implementation: the stream opens with :ok, then stays silent."""
    no_keepalives = json.dumps({"sse_backend_env": {"SSE_KEEPALIVE_INTERVAL": "3600"}})
    try:
        playbook(BACKEND_ROLE_ONLY, "-e", no_keepalives)
        assert_fails(verify("keepalive interval 3600 s"), "keepalive")
    finally:
        playbook("playbooks/backend.yml")  # the environment rewritten, restart, verified


def test_backend_without_ok(host, verify, playbook, tmp_path) -> None:
    """A release whose stream starts without :ok (everything else about it is healthy)."""
    # a copy: pip builds a project folder in place (build/, *.egg-info)
    source = tmp_path / "no_ok_app"
    shutil.copytree(NO_OK_APP, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    release = ["-e", "sse_backend_version=fault-no-ok"]
    try:
        app = ["-e", f"sse_backend_source={source}", "-e", "sse_backend_app=no_ok_app:app"]
        playbook(BACKEND_ROLE_ONLY, *app, *release)
        # verify expects the release just deployed, so only the stream's first line fails
        assert_fails(verify("release without :ok", *release), "first_comment")
    finally:
        playbook("playbooks/backend.yml")  # the default release: switched back, restart, verified


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
