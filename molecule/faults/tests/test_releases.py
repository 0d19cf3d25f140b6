"""Releases on the single host (proxy and backend on one host: the demo's topology), where
no proxy can drain the backend, so playbooks/backend.yml releases it in place.

- A release whose virtualenv is incomplete (gunicorn deleted from it, as a pip install
  that failed halfway leaves it) is rebuilt by the next run, restarted and served again.
- A broken release (a new version whose environment turns keepalives off) deployed with
  site.yml fails the check through nginx in backend.yml: the run goes back to the release
  that ran before on its own and fails naming the check; that release is `current`, runs
  and serves, and the stream verifies through nginx afterwards.

Runs after test_faults.py (file order) on the healthy deployment it leaves: the default
release 1.0.0 running.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from conftest import (
    BACKEND_CURRENT,
    BACKEND_ROOT,
    BACKEND_SERVICE,
    BACKEND_USER,
    ENV_FILE,
    HOST,
    assert_passes,
    run_on_target,
)

RELEASE = "1.0.0"  # sse_backend_version's default: what converge and test_faults.py leave
VERSION = (
    "import json, urllib.request; "
    "answer = urllib.request.urlopen('http://127.0.0.1:8000/version', timeout=5); "
    "print(json.load(answer)['version'])"
)


@dataclass(frozen=True)
class Backend:
    active: str
    pid: int
    version: str  # what GET /version answers
    current: str  # the release `current` points at
    releases: tuple[str, ...]


def backend_state(host) -> Backend:
    uid = host.user(BACKEND_USER).uid
    show = run_on_target(
        host,
        f"runuser -u {BACKEND_USER} -- env XDG_RUNTIME_DIR=/run/user/{uid}"
        f" systemctl --user show -p ActiveState -p MainPID {BACKEND_SERVICE}",
    )
    state = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    version = host.run(f"python3 -c {shlex.quote(VERSION)}")
    return Backend(
        active=state.get("ActiveState", ""),
        pid=int(state.get("MainPID", "0") or 0),
        version=version.stdout.strip() if version.rc == 0 else f"(none: {version.stderr.strip()})",
        current=run_on_target(host, f'basename "$(readlink {BACKEND_CURRENT})"').strip(),
        releases=tuple(sorted(run_on_target(host, f"ls {BACKEND_ROOT}/releases").split())),
    )


def test_incomplete_release_is_rebuilt(host, playbook) -> None:
    """gunicorn deleted from the running release's virtualenv: the next run of the same
    version finds the release incomplete, rebuilds it and restarts onto it."""
    before = backend_state(host)
    assert (before.active, before.version, before.current) == ("active", RELEASE, RELEASE), before
    gunicorn = f"{BACKEND_ROOT}/releases/{RELEASE}/venv/lib/python3*/site-packages/gunicorn"
    run_on_target(host, f"rm -r {gunicorn}; ! ls -d {gunicorn}")
    # the running process has its code in memory: it still serves, the files are broken
    assert backend_state(host) == before

    playbook("playbooks/backend.yml")  # fails if the release is not complete or not verified

    after = backend_state(host)
    assert (after.active, after.version, after.current) == ("active", RELEASE, RELEASE), after
    assert after.pid != before.pid, "the rebuilt release was not restarted onto"
    run_on_target(
        host,
        f"ls -d {gunicorn}/__init__.py; test -f {BACKEND_ROOT}/releases/{RELEASE}/.installed; "
        f"runuser -u {BACKEND_USER} -- {BACKEND_CURRENT}/venv/bin/python -c 'import gunicorn'",
    )


def test_broken_release_goes_back_on_its_own(host, playbook, verify) -> None:
    """site.yml with release 9.0.0-no-keepalive (its environment turns keepalives off)."""
    before = backend_state(host)
    assert (before.active, before.version, before.current) == ("active", RELEASE, RELEASE), before
    env_before = run_on_target(host, f"cat {ENV_FILE}")
    broken = json.dumps({"sse_backend_env": {"SSE_KEEPALIVE_INTERVAL": "3600"}})

    proc = playbook(
        "site.yml", "-e", "sse_backend_version=9.0.0-no-keepalive", "-e", broken, check=False
    )
    output = " ".join(proc.stdout.split())

    # the run fails, naming the check that failed and the release it went back to
    assert proc.returncode != 0, "site.yml passed with a release that sends no keepalives"
    assert f"Release 9.0.0-no-keepalive failed on {HOST}" in output, output[-3000:]
    assert f"the check through nginx failed: SSE verification failed on {HOST}: keepalive:" in (
        output
    ), output[-3000:]
    assert f"went back to release {RELEASE}, which passed the direct check" in output, output[
        -3000:
    ]
    # the release ran (so the check met it), and the previous one runs again, restarted,
    # with the environment it had
    after = backend_state(host)
    assert "9.0.0-no-keepalive" in after.releases, after  # installed, not current
    assert (after.active, after.version, after.current) == ("active", RELEASE, RELEASE), after
    assert after.pid != before.pid, "the release gone back to was not restarted"
    assert run_on_target(host, f"cat {ENV_FILE}") == env_before

    # and the stream verifies through nginx (every check of verify.yml)
    assert_passes(verify("after the release went back"))
