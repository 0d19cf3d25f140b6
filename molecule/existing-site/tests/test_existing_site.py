"""site.yml on a server that already runs its own sites and its own app (issue 16).

prepare.yml recorded, before the role ran, how every site answers (status, Location,
sha256 of the body: /usr/local/bin/site-answers), the sha256 of every file under
/etc/nginx and the operator's hand-written user unit ticker.service (examples/apps/
asgi-ticker under uvicorn on 127.0.0.1:9000, user shop) with its process. converge ran
site.yml: sse_backend took that unit over (adopt) and deployed the same app, sse_nginx in
mode locations added the SSE location /updates/stream, sse_verify verified the stream
through nginx. The tests prove, in file order:

- every other path and virtual host answers byte for byte as before (the app's own /api/
  too, now served by the role's release), the SSE stream answers through nginx with :ok
  at once and keepalive comments at the role's interval, and the role changed only its
  own files plus one include line;
- the hand-written unit was taken over: its file kept as ticker.service.before-sse_backend,
  its process gone, exactly one app (the role's unit) holding port 9000;
- a broken change (an invalid directive reaching the snippet) is refused: every file under
  /etc/nginx is byte-identical afterwards, nginx was not reloaded, all sites still answer;
- a location of the operator's that would serve the SSE path first is refused before any
  file changes, quoting its file and line;
- playbooks/diagnose.yml calls the deployment healthy;
- sse_nginx_locations_state absent gives the site file back exactly as it was, and
  present puts the include line back (the scenario ends converged);
- a WSGI app with the gthread worker streams too: examples/apps/wsgi-stream deployed by
  playbooks/backend.yml under a second name, user and port, verified by
  playbooks/verify.yml (its release, and the stream through the operator's /events
  location: :ok, keepalives).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from sse_testinfra import PROJECT, run_playbook

HOST = "existing-site-debian12"
RECORD = "/var/lib/existing-site"
SITE_FILE = "/etc/nginx/sites-available/app.example"
SITE_AS_NGINX_READS_IT = "/etc/nginx/sites-enabled/app.example"
SNIPPET = "/etc/nginx/snippets/sse-app.conf"
OWN_FILES = {
    "./snippets/sse-app.conf",
    "./conf.d/app.upstream.conf",
    "./conf.d/app.log_format.conf",
}
INCLUDE = f"include {SNIPPET}; # sse_nginx app: SSE locations"
BACKUP = "/root/existing-site-test-backup"
STREAM = "https://app.example/updates/stream"
UNIT_DIR = "/home/shop/.config/systemd/user"
CURL = "curl -sS --cacert /etc/ssl/certs/app.example.crt --resolve app.example:443:127.0.0.1"


def run_on_target(host, script: str) -> str:
    result = host.run("bash -euc " + shlex.quote(script))
    assert result.rc == 0, f"{script}\nexit {result.rc}: {result.stdout}{result.stderr}"
    return result.stdout


def etc_nginx(host) -> dict[str, str]:
    """./relative path -> sha256 of every file (and symlink's target) under /etc/nginx."""
    out = run_on_target(
        host,
        r"cd /etc/nginx && find . \( -type f -o -type l \) -print0 | sort -z | xargs -0 sha256sum",
    )
    return {line.split(None, 1)[1]: line.split(None, 1)[0] for line in out.splitlines()}


def etc_nginx_times(host) -> str:
    """Modification time of every file under /etc/nginx: a restore leaves them as they were."""
    return run_on_target(
        host, r"cd /etc/nginx && find . \( -type f -o -type l \) -printf '%p %T@\n' | sort"
    )


def recorded_etc_nginx(host) -> dict[str, str]:
    out = run_on_target(host, f"cat {RECORD}/etc-nginx.before")
    return {line.split(None, 1)[1]: line.split(None, 1)[0] for line in out.splitlines()}


def answers(host) -> str:
    return run_on_target(host, "/usr/local/bin/site-answers")


def nginx_pids(host) -> str:
    """The master and the workers taking connections: a reload replaces the workers
    (workers of an earlier reload that are still shutting down may end meanwhile)."""
    return run_on_target(host, "cat /run/nginx.pid; pgrep -f '^nginx: worker process$' | sort")


def proxy(*extra: str, check: bool = True):
    """playbooks/proxy.yml from the controller, as an operator runs it."""
    return run_playbook("playbooks/proxy.yml", *extra, check=check, log_prefix="existing-site")


def test_every_other_site_answers_as_before(host) -> None:
    before = run_on_target(host, f"cat {RECORD}/answers.before")
    assert "https://app.example/admin 200" in before and "http://other.example/ 200" in before
    assert "https://app.example/api/ 200" in before, "the operator's app did not answer"
    assert answers(host) == before


def test_the_stream_answers_through_the_sites_own_tls(host) -> None:
    # keepalive interval 2 s, an update every 5 s (molecule.yml): in 4.8 s the stream
    # sends :ok at once and keepalive comments only
    out = run_on_target(host, f"{CURL} -N --max-time 4.8 {STREAM} || true")
    lines = [line for line in out.splitlines() if line]
    assert lines[:1] == [":ok"], out
    assert lines[1:] and set(lines[1:]) == {":keepalive"}, out


def test_the_hand_written_unit_was_taken_over(host) -> None:
    kept = f"{UNIT_DIR}/ticker.service.before-sse_backend"
    assert run_on_target(host, f"sha256sum < {kept}") == run_on_target(
        host, f"sha256sum < {RECORD}/ticker.service.orig"
    ), "the hand-written unit was not kept as it was"
    old_pid = run_on_target(host, f"cat {RECORD}/ticker.mainpid").strip()
    assert old_pid != "0"
    assert host.run(f"grep -qa uvicorn /proc/{old_pid}/cmdline").rc != 0, "the old app runs"
    shop = "systemctl --user -M shop@ show -P"
    assert "/ticker/current/venv/bin/gunicorn" in run_on_target(host, f"{shop} ExecStart ticker")
    # every app process of shop and every listener on port 9000 runs in the role's unit
    # (the listening socket also in the user manager: the socket unit); no uvicorn of the
    # hand-written venv
    uid = run_on_target(host, "id -u shop").strip()
    apps = run_on_target(host, "pgrep -u shop -f 'gunicorn|uvicorn' || true").split()
    # as shop: root in the container is not shown the user's processes
    listeners = run_on_target(host, "runuser -u shop -- ss -Hltnp 'sport = :9000'")
    pids = set(re.findall(r"pid=(\d+)", listeners))
    assert apps and pids, (apps, listeners)
    for pid in set(apps) | pids:
        # systemd's hierarchy: the name=systemd one of a v1/hybrid host, else cgroup v2
        cgroup = run_on_target(
            host,
            f"{{ sed -n 's/^[0-9]*:name=systemd://p' /proc/{pid}/cgroup; "
            f"sed -n 's/^0:://p' /proc/{pid}/cgroup; }} | head -1",
        ).strip()
        assert cgroup.endswith(("/ticker.service", f"/user@{uid}.service/init.scope")), (
            pid,
            cgroup,
            listeners,
        )
        if pid in apps:
            assert cgroup.endswith("/ticker.service"), (pid, cgroup)
    assert host.run("pgrep -u shop -f /home/shop/venv/").rc == 1, "a second copy runs"
    # the operator's /api/ is served by the role's release now (same app, same answers)
    before = run_on_target(host, f"cat {RECORD}/api-version.before").strip()
    now = run_on_target(
        host,
        f"{CURL} -o /dev/null -D - https://app.example/api/ | tr -d '\\r' "
        "| sed -n 's/^x-app-version: //Ip'",
    ).strip()
    assert (before, now) == ("by-hand", "1.0.0")


def test_only_the_roles_files_and_one_include_line_changed(host) -> None:
    before, now = recorded_etc_nginx(host), etc_nginx(host)
    assert set(now) - set(before) == OWN_FILES, "files the role added"
    assert set(before) - set(now) == set(), "nothing removed (sites-enabled/default stays)"
    changed = {path for path in before if before[path] != now[path]}
    # sites-enabled/app.example is the symlink to the one edited file
    assert changed == {"./sites-available/app.example", "./sites-enabled/app.example"}
    diff = host.run(f"diff {RECORD}/app.example.orig {SITE_FILE}")
    added = [line[2:] for line in diff.stdout.splitlines() if line.startswith("> ")]
    removed = [line for line in diff.stdout.splitlines() if line.startswith("< ")]
    assert (added, removed) == ([f"    {INCLUDE}"], []), diff.stdout
    assert host.file(SITE_AS_NGINX_READS_IT).is_symlink, "the symlink was not replaced"


def test_a_broken_change_is_refused_with_every_file_unchanged(host) -> None:
    files, times = etc_nginx(host), etc_nginx_times(host)
    pids, site_answers = nginx_pids(host), answers(host)
    proc = proxy(
        "-e",
        json.dumps({"sse_nginx_extra_location_directives": ["this_is_not_a_directive on;"]}),
        check=False,
    )
    assert proc.returncode != 0, "the broken change was applied"
    assert "nginx -t rejected the change, so every file is back as it was" in proc.stdout
    assert 'unknown directive "this_is_not_a_directive"' in proc.stdout
    assert f"{SNIPPET}:" in proc.stdout, "nginx's message names the snippet's line"
    assert etc_nginx(host) == files, "a file under /etc/nginx differs after the refusal"
    assert etc_nginx_times(host) == times, "a file's modification time differs"
    assert nginx_pids(host) == pids, "nginx was reloaded"
    assert answers(host) == site_answers


def test_a_shadowing_location_is_refused_quoting_file_and_line(host) -> None:
    shadow = "    location ~ ^/updates/ { return 410; }"
    run_on_target(host, f"mkdir -p {BACKUP} && cp -p {SITE_FILE} {BACKUP}/")
    try:
        # the operator's own edit (on disk, as nginx -T reads it) after the .php location
        run_on_target(host, f"sed -i 's|^    location ~ \\\\.php\\$ {{|{shadow}\\n&|' {SITE_FILE}")
        line = run_on_target(host, f"grep -nF {shlex.quote(shadow.strip())} {SITE_FILE}").split(
            ":"
        )[0]
        files = etc_nginx(host)
        proc = proxy(check=False)
        assert proc.returncode != 0, "a shadowed SSE location was accepted"
        text = " ".join(proc.stdout.split())
        quoted = f"{SITE_AS_NGINX_READS_IT}:{line}: location ~ ^/updates/ would serve"
        assert f"{quoted} the SSE path /updates/stream" in text, text[-2000:]
        assert "nothing was changed" in text
        assert etc_nginx(host) == files
    finally:
        run_on_target(host, f"cp -p {BACKUP}/app.example {SITE_FILE}")


def test_diagnose_calls_it_healthy(host, tmp_path: Path) -> None:
    proc = run_playbook(
        "playbooks/diagnose.yml",
        "-e",
        f"sse_diagnose_report_dir={tmp_path}",
        log_prefix="existing-site",
    )
    assert re.search(rf"{HOST}\s*:.*changed=0 .*failed=0 ", proc.stdout.split("PLAY RECAP", 1)[1])
    report = json.loads((tmp_path / f"{HOST}.json").read_text())
    assert report["healthy"] is True, report["sentence"]
    served = report["nginx"]["paths"]["/updates/stream"]["servers"][0]
    assert served["location_where"].startswith(f"{SNIPPET}:"), served


def test_absent_gives_the_site_file_back_then_present_again(host) -> None:
    proxy("-e", "sse_nginx_locations_state=absent")
    assert run_on_target(host, f"sha256sum < {SITE_FILE}") == run_on_target(
        host, f"sha256sum < {RECORD}/app.example.orig"
    ), "the site file is not as it was before the role"
    assert set(etc_nginx(host)) == set(recorded_etc_nginx(host)), "a file of the role stayed"
    assert answers(host) == run_on_target(host, f"cat {RECORD}/answers.before")
    proxy()
    assert INCLUDE in host.file(SITE_FILE).content_string


# the WSGI example under a second name, user and port; nginx reaches it through the
# operator's own location /events (prepare.yml), so the upstream here is only its wiring
WSGI = {
    "sse_backend_name": "wsgi-stream",
    "sse_backend_user": "wsgi",
    "sse_backend_bind": "127.0.0.1:9100",
    "sse_backend_source": str(PROJECT / "examples/apps/wsgi-stream"),
    "sse_backend_app": "wsgi_stream.app:application",
    "sse_backend_worker_class": "gthread",
    "sse_backend_gunicorn_options": ["--threads=8"],
    "sse_backend_env": {"TICK_SECONDS": 5},
    "sse_nginx_upstreams": ["127.0.0.1:9100"],
    "sse_verify_url": "https://app.example/events",
    # the operator's location logs in its own format, without the probe's id
    "sse_verify_access_log": "",
}


def test_a_wsgi_app_with_the_gthread_worker_streams_too(host, tmp_path: Path) -> None:
    run_playbook("playbooks/backend.yml", "-e", json.dumps(WSGI), log_prefix="existing-site")
    unit = run_on_target(host, "systemctl --user -M wsgi@ show -P ExecStart wsgi-stream")
    assert "--worker-class gthread" in unit and "--threads=8" in unit, unit
    run_playbook(
        "playbooks/verify.yml",
        "-e",
        json.dumps({**WSGI, "sse_verify_report_dir": str(tmp_path)}),
        log_prefix="existing-site",
    )
    report = json.loads((tmp_path / f"{HOST}.json").read_text())
    assert report["ok"] is True, report["failures"]
    stream = report["stream"]
    assert stream["checks"]["first_comment"] == "pass", stream
    # hold 7 s, keepalive 2 s, a tick at 5 s: keepalive comments, not only events
    assert stream["keepalives"] >= 2, stream
