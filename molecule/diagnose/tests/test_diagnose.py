"""playbooks/diagnose.yml names the right cause, and never changes the host.

On the converged (healthy) deployment the first test expects "healthy". Each later test
injects one cause by hand, the way the incident's operators met them (a hand-edited nginx
site, a backend deployed without keepalives, code reinstalled without a restart, a stopped
backend, a Gunicorn sync worker with a short --timeout), runs diagnose.yml from the
controller exactly as a user would, and reads the cause from the JSON report it writes
(sse_diagnose_report_dir), not from console text. Every diagnose run is checked to change
nothing: PLAY RECAP changed=0, the sha256 of every file under /etc/nginx and of the user
units identical before and after, the nginx master and the backend's main process the
same. Each test restores the deployment, also when it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sse_testinfra import run_playbook

HOST = "diagnose-debian12"  # the report is <report dir>/<inventory_hostname>.json
PLAYBOOK_TIMEOUT = 600

# On the target (sse_nginx and sse_backend defaults)
SITE_CONF = "/etc/nginx/conf.d/sse.conf"
UPSTREAM_CONF = "/etc/nginx/conf.d/sse.upstream.conf"
SSE_LOCATION = r"/location \/notify\/events {/,/}/"  # sed address: the SSE location block
USER = "sse"
UNIT_DIR = "/var/lib/sse/.config/systemd/user"
UNIT_FILE = f"{UNIT_DIR}/sse-backend.service"
ENV_FILE = "/var/lib/sse/.config/sse-backend/env"
CURRENT = "/var/lib/sse/sse-backend/current"
BACKUP = "/root/diagnose-test-backup"
SHORT_READ = r"s/proxy_read_timeout [^;]*;/proxy_read_timeout 1s;/"  # sed, in the SSE location
# what a diagnose run must leave byte-identical
WATCHED = ["/etc/nginx", UNIT_DIR]


def run_on_target(host, script: str) -> str:
    result = host.run("sh -euc " + shlex.quote(script))
    assert result.rc == 0, f"{script}\nexit {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout


def user_systemctl(*args: str) -> str:
    return (
        f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {USER}) systemctl --user "
        + " ".join(args)
    )


@dataclass
class Diagnosis:
    report: dict[str, Any]
    output: str

    @property
    def cause(self) -> str | None:
        cause = self.report["cause"]
        return cause["id"] if cause else None

    def finding(self, fid: str) -> dict[str, Any]:
        found = [f for f in self.report["findings"] if f["id"] == fid]
        assert found, f"no finding {fid}: {self.summary()}"
        return found[0]

    def summary(self) -> str:
        return self.report["sentence"] + "".join(
            f"\n    {f['severity']} {f['id']}: {f['where']}" for f in self.report["findings"]
        )


def _state(host) -> tuple[str, str]:
    """sha256 of every watched file, and the PIDs a restart or reload would change."""
    sums = run_on_target(
        host, f"find {' '.join(WATCHED)} -type f -print0 | sort -z | xargs -0 sha256sum"
    )
    pids = run_on_target(
        host,
        "cat /run/nginx.pid; "
        + user_systemctl("show", "-p", "MainPID", "--value", "sse-backend.service"),
    )
    return sums, pids


@pytest.fixture(scope="module")
def playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run playbooks/<name> against the molecule inventory (sse_testinfra)."""

    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_playbook(
            f"playbooks/{name}", *args, timeout=PLAYBOOK_TIMEOUT, log_prefix="diagnose"
        )

    return run


@pytest.fixture
def diagnose(host, playbook, tmp_path) -> Callable[..., Diagnosis]:
    """Run playbooks/diagnose.yml, prove it changed nothing, return its report."""
    runs = iter(range(1, 100))

    def run(label: str, *args: str) -> Diagnosis:
        report_dir = tmp_path / f"diagnose-{next(runs)}"
        before = _state(host)
        proc = playbook("diagnose.yml", "-e", f"sse_diagnose_report_dir={report_dir}", *args)
        after = _state(host)
        recap = proc.stdout.split("PLAY RECAP", 1)[1]
        assert re.search(rf"{HOST}\s*:.*changed=0 .*failed=0 ", recap), recap
        assert after[0] == before[0], "a file under /etc/nginx or a unit file changed"
        assert after[1] == before[1], "nginx or the backend was restarted or reloaded"
        report = json.loads((report_dir / f"{HOST}.json").read_text())
        result = Diagnosis(report, proc.stdout)
        print(f"  [{label}] {result.summary()}")
        shown = " ".join(proc.stdout.split()).replace("''", "'")
        assert " ".join(report["sentence"].split())[:60] in shown, "the sentence is not shown"
        return result

    return run


def line_of(host, path: str, text: str) -> str:
    """path:line of the first line containing ``text``."""
    out = run_on_target(host, f"grep -nF {shlex.quote(text)} {path} | head -1")
    return f"{path}:{out.split(':', 1)[0]}"


@pytest.fixture
def saved(host) -> Iterator[Callable[..., None]]:
    """Save a file (with its times) before a fault; at teardown put it back and apply it."""
    files: list[tuple[str, Callable[[Any], None]]] = []

    def save(path: str, apply: Callable[[Any], None]) -> None:
        run_on_target(
            host, f"mkdir -p {BACKUP}{os.path.dirname(path)} && cp -p {path} {BACKUP}{path}"
        )
        files.append((path, apply))

    yield save
    for path, apply in files:
        run_on_target(host, f"cp -p {BACKUP}{path} {path}")
        apply(host)


def edit_sse_location(host, sed_command: str, expect: str) -> None:
    """Hand-edit the live site's SSE location (as in the incident), test it and reload."""
    run_on_target(
        host,
        f"sed -i {shlex.quote(SSE_LOCATION + ' ' + sed_command)} {SITE_CONF}\n"
        f"grep -qF {shlex.quote(expect)} {SITE_CONF}\n"
        "nginx -t -q\n"
        "systemctl reload nginx\n"
        "sleep 1\n",  # the new workers are up
    )


def reload_nginx(host) -> None:
    run_on_target(host, "nginx -t -q && systemctl reload nginx && sleep 1")


def restart_backend(host) -> None:
    run_on_target(
        host,
        user_systemctl("daemon-reload")
        + " && "
        + user_systemctl("restart", "sse-backend.socket", "sse-backend.service"),
    )


# --- the tests, in file order; each leaves a healthy deployment ----------------------------


def test_healthy_deployment_is_reported_healthy(host, diagnose) -> None:
    result = diagnose("healthy")
    assert result.report["healthy"] is True, result.summary()
    assert result.cause is None
    assert not [f for f in result.report["findings"] if f["severity"] == "critical"]
    served = result.report["nginx"]["paths"]["/notify/events"]["servers"][0]
    assert served["location"] == "location /notify/events"
    assert served["location_where"] == line_of(host, SITE_CONF, "location /notify/events {")
    assert served["target"]["servers"] == ["127.0.0.1:8000"]
    probes = result.report["probes"]
    assert probes["nginx"]["ok"] and probes["backend"]["ok"]
    assert probes["backend"]["url"] == "http://127.0.0.1:8000/notify/events"
    assert "status=200" in probes["nginx"]["access_log_line"]
    (unit,) = result.report["backend"]["units"]
    assert (unit["unit"], unit["scope"], unit["user"], unit["active"]) == (
        "sse-backend.service",
        "user",
        USER,
        "active",
    )
    assert unit["server"]["worker_kind"] == "async"


def test_proxy_buffering_left_on(host, diagnose, saved) -> None:
    saved(SITE_CONF, reload_nginx)
    edit_sse_location(
        host,
        r"s/^\( *\)proxy_buffering off;/\1proxy_buffering on;\n"
        r"\1proxy_ignore_headers X-Accel-Buffering;/",
        "proxy_ignore_headers X-Accel-Buffering;",
    )
    result = diagnose("proxy_buffering on")
    assert result.cause == "nginx.proxy_buffering", result.summary()
    assert result.report["cause"]["where"] == line_of(host, SITE_CONF, "proxy_buffering on;")
    assert line_of(host, SITE_CONF, "proxy_ignore_headers") in result.report["cause"]["message"]
    assert result.report["probes"]["backend"]["ok"] and not result.report["probes"]["nginx"]["ok"]


def test_read_timeout_shorter_than_keepalive(host, diagnose, saved) -> None:
    saved(SITE_CONF, reload_nginx)
    edit_sse_location(
        host, r"s/proxy_read_timeout [^;]*;/proxy_read_timeout 1s;/", "proxy_read_timeout 1s;"
    )
    result = diagnose("proxy_read_timeout 1s")
    assert result.cause == "nginx.proxy_read_timeout", result.summary()
    assert result.report["cause"]["where"] == line_of(host, SITE_CONF, "proxy_read_timeout 1s;")
    assert "keepalive interval (2 s)" in result.report["cause"]["message"]


def test_backend_without_keepalives(host, diagnose, saved) -> None:
    """The previous implementation: the stream opens with :ok, then stays silent. Written
    into the environment file by hand (the line sse_backend_env would add: the last one
    wins) and restarted: backend.yml would verify it and go back on its own. Put back by
    hand (the environment file as it was, and a restart)."""
    saved(ENV_FILE, restart_backend)
    run_on_target(host, f"printf '%s\\n' 'SSE_KEEPALIVE_INTERVAL=\"3600\"' >> {ENV_FILE}")
    restart_backend(host)
    result = diagnose("keepalive interval 3600 s")
    assert result.cause == "backend.no_keepalive", result.summary()
    assert result.report["probes"]["backend"]["keepalives"] == 0
    assert result.finding("proxy.fails_with_backend")["severity"] == "info"


def test_code_changed_without_restart(host, diagnose) -> None:
    """A naive deploy script: new code installed into the running release, no restart.
    Diagnosed in check mode: the same verdict, the same nothing changed."""
    try:
        run_on_target(
            host,
            f"sleep 1; cd {CURRENT}\n"
            "venv/bin/pip install --quiet --disable-pip-version-check --no-index"
            " --find-links wheelhouse --force-reinstall wheelhouse/*.whl\n"
            "touch .installed\n",
        )
        result = diagnose("reinstalled, not restarted (--check)", "--check")
        assert result.cause == "backend.stale_code", result.summary()
        assert "restart" in result.report["cause"]["message"]
        assert result.report["probes"]["backend"][
            "ok"
        ]  # the same code streams fine: only the files say it
    finally:
        restart_backend(host)


def test_backend_down(host, diagnose) -> None:
    try:
        run_on_target(host, user_systemctl("stop", "sse-backend.socket", "sse-backend.service"))
        result = diagnose("socket and service stopped")
        assert result.cause == "backend.unit_inactive", result.summary()
        assert "sse-backend.socket is inactive" in result.report["cause"]["message"]
        assert result.finding("backend.unreachable")["severity"] == "critical"
        assert result.report["probes"]["nginx"]["status"] == 502
    finally:
        restart_backend(host)


def test_gunicorn_sync_worker_with_short_timeout(host, diagnose, saved) -> None:
    """A classic: an ASGI app under Gunicorn's sync worker, killed --timeout s into a stream
    (here it cannot even answer; the cause to name is the worker class and timeout)."""
    saved(UNIT_FILE, restart_backend)
    run_on_target(
        host,
        "sed -i 's/--worker-class uvicorn_worker.UvicornH11Worker/-k sync --timeout 5/'"
        f" {UNIT_FILE}\n"
        f"grep -qF -- '-k sync --timeout 5' {UNIT_FILE}\n",
    )
    restart_backend(host)
    result = diagnose("gunicorn -k sync --timeout 5")
    assert result.cause == "backend.sync_worker", result.summary()
    assert "--timeout 5" in result.report["cause"]["message"]
    assert result.report["cause"]["where"] == line_of(host, UNIT_FILE, "ExecStart=")
    assert not result.report["probes"]["backend"]["ok"]


# --- issue 21: causes the first version missed, and a decoy --------------------------------


def test_regex_location_shadows_the_sse_location(host, diagnose, saved) -> None:
    """nginx serves /notify/events from a regex location, not from the prefix location
    named exactly like it (that one only ends the search with "=")."""
    saved(SITE_CONF, reload_nginx)
    upstream = run_on_target(host, f"grep -o 'proxy_pass http://[^;]*' {SITE_CONF} | head -1")
    shadow = f"location ~ ^/notify/ {{ {upstream.strip()}; proxy_read_timeout 1s; }}"
    insert = r"/location \/notify\/events {/i\    " + shadow  # sed: insert before it
    run_on_target(
        host,
        f"sed -i {shlex.quote(insert)} {SITE_CONF}\n"
        f"grep -qF {shlex.quote(shadow)} {SITE_CONF}\n"
        "nginx -t -q && systemctl reload nginx && sleep 1\n",
    )
    result = diagnose("regex location ~ ^/notify/ with proxy_read_timeout 1s")
    where = line_of(host, SITE_CONF, "location ~ ^/notify/ {")
    served = result.report["nginx"]["paths"]["/notify/events"]["servers"][0]
    assert (served["location"], served["location_where"]) == ("location ~ ^/notify/", where)
    assert result.cause == "nginx.proxy_read_timeout", result.summary()
    assert result.report["cause"]["where"] == where
    assert f"location ~ ^/notify/ at {where}" in result.report["cause"]["message"]


def test_backend_answers_x_accel_buffering_yes(host, diagnose, saved) -> None:
    """The app asks nginx to buffer its stream: proxy_buffering off does not help."""
    stream = run_on_target(
        host, f"readlink -f {CURRENT}/venv/lib/python3*/site-packages/sse_app/stream.py"
    ).strip()
    saved(stream, restart_backend)
    run_on_target(
        host,
        f'sed -i \'s/"X-Accel-Buffering": "no"/"X-Accel-Buffering": "yes"/\' {stream}\n'
        f'grep -qF \'"X-Accel-Buffering": "yes"\' {stream}\n',
    )
    restart_backend(host)
    result = diagnose("backend sends X-Accel-Buffering: yes")
    assert result.cause == "backend.accel_buffering", result.summary()
    message = result.report["cause"]["message"]
    assert f"proxy_buffering off at {line_of(host, SITE_CONF, 'proxy_buffering off;')}" in message
    assert "sse-backend.service" in message
    assert result.report["probes"]["backend"]["ok"] and not result.report["probes"]["nginx"]["ok"]


def test_upstream_port_where_the_backend_does_not_listen(host, diagnose, saved) -> None:
    """Not "the backend is down": nginx sends to 8001, the socket unit listens on 8000."""
    saved(UPSTREAM_CONF, reload_nginx)
    run_on_target(
        host,
        f"sed -i 's/server 127.0.0.1:8000/server 127.0.0.1:8001/' {UPSTREAM_CONF}\n"
        f"grep -qF 'server 127.0.0.1:8001' {UPSTREAM_CONF}\n"
        "nginx -t -q && systemctl reload nginx && sleep 1\n",
    )
    result = diagnose("upstream 127.0.0.1:8001, socket on 8000")
    assert result.cause == "nginx.upstream_port", result.summary()
    assert result.report["cause"]["where"] == line_of(host, UPSTREAM_CONF, "server 127.0.0.1:8001")
    assert "sse-backend.socket" in result.report["cause"]["message"]
    assert result.report["probes"]["backend"]["url"] == "http://127.0.0.1:8000/notify/events"
    assert result.report["probes"]["backend"]["ok"]


def test_environment_and_code_applied_read_healthy(host, diagnose) -> None:
    """A decoy: the environment file written just before a restart (start times precise to a
    clock tick, not to /proc/stat's whole-second btime), then new code activated by a
    Gunicorn HUP reload (new workers, same master): nothing is stale."""
    run_on_target(
        host,
        f"touch {ENV_FILE} && "
        + user_systemctl("restart", "sse-backend.service")
        + f"\nsleep 1; touch {CURRENT}/.installed\n"
        + user_systemctl("reload", "sse-backend.service")
        + "\nsleep 3\n",  # the new workers are up, the old ones gone
    )
    result = diagnose("environment written then restart; code touched then HUP")
    assert result.report["healthy"] is True, result.summary()
    found = {f["id"] for f in result.report["findings"]}
    assert not found & {"backend.stale_code", "backend.stale_environment"}, result.summary()
    (unit,) = result.report["backend"]["units"]
    assert unit["code_runners"] == [w["pid"] for w in unit["workers"]]
    assert result.report["backend"]["process_start"]["precision_s"] == 0.01


def test_app_that_fails_to_boot_is_quoted(host, diagnose, saved) -> None:
    """A user unit whose app rejects its environment: the app's own error, not systemd's
    'Failed to start'. Restart=no (a drop-in) keeps the failed state still to diagnose;
    the socket unit still listens."""
    dropin = f"{UNIT_DIR}/sse-backend.service.d"

    def restore(host) -> None:
        run_on_target(
            host,
            f"rm -rf {dropin}\n"
            + user_systemctl("daemon-reload")
            + "\n"
            + user_systemctl("reset-failed", "sse-backend.service", "sse-backend.socket")
            + " || true\n",
        )
        restart_backend(host)

    saved(ENV_FILE, restore)
    run_on_target(
        host,
        f"mkdir -p {dropin} && printf '[Service]\\nRestart=no\\n' > {dropin}/diagnose.conf\n"
        f"chown -R {USER}: {dropin}\n"
        f"echo SSE_RETRY_MS=abc >> {ENV_FILE}\n"
        + user_systemctl("daemon-reload")
        + "\n"
        # READY=1 comes from Gunicorn's master before a worker boots: wait for the failure
        + user_systemctl("restart", "sse-backend.service")
        + " || true\n"
        + "for i in $(seq 40); do "
        + user_systemctl("is-failed", "-q", "sse-backend.service")
        + " && break; sleep 0.5; done\n"
        + user_systemctl("is-failed", "-q", "sse-backend.service")
        + "\n",
    )
    result = diagnose("SSE_RETRY_MS=abc: the app fails to boot")
    assert result.cause == "backend.unit_inactive", result.summary()
    message = result.report["cause"]["message"]
    assert "ValueError: SSE_RETRY_MS must be an integer, got 'abc'" in message, message
    assert result.report["cause"]["where"] == line_of(host, UNIT_FILE, "ExecStart=")
    # its socket still listens: a probe would start the service, so none ran
    assert "sse-backend.socket is active" in message
    assert result.report["probes"]["backend"]["skipped"]


def test_edit_on_disk_not_reloaded_is_told_apart(host, diagnose, saved) -> None:
    """A valid edit that nginx has not loaded: the live stream passes, so it is not the
    present cause; the verdict names it as what the next reload brings."""
    saved(SITE_CONF, reload_nginx)
    run_on_target(  # sed -i, no reload
        host,
        f"sed -i {shlex.quote(SSE_LOCATION + ' ' + SHORT_READ)} {SITE_CONF}\n"
        f"grep -qF 'proxy_read_timeout 1s;' {SITE_CONF}\n",
    )
    result = diagnose("proxy_read_timeout 1s on disk, not reloaded")
    where = line_of(host, SITE_CONF, "proxy_read_timeout 1s;")
    assert result.report["healthy"] is True, result.summary()
    pending = result.finding("nginx.proxy_read_timeout")
    assert (pending["severity"], pending["loaded"], pending["where"]) == ("warning", False, where)
    assert (
        f"not loaded yet (breaks streams at the next reload): nginx.proxy_read_timeout at {where}"
        in (result.report["sentence"])
    )
    assert result.report["probes"]["nginx"]["ok"]
