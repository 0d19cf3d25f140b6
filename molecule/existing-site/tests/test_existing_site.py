"""sse_nginx in mode locations on a server that already runs its own sites (issue 16).

prepare.yml recorded, before the role ran, how every site answers (status, Location,
sha256 of the body: /usr/local/bin/site-answers) and the sha256 of every file under
/etc/nginx. After converge (site.yml, which also verified the stream through nginx with
sse_verify) the tests prove, in file order:

- every other path and virtual host answers byte for byte as before, the SSE stream
  answers through nginx, and the role changed only its own files plus one include line;
- a broken change (an invalid directive reaching the snippet) is refused: every file under
  /etc/nginx is byte-identical afterwards, nginx was not reloaded, all sites still answer;
- a location of the operator's that would serve the SSE path first is refused before any
  file changes, quoting its file and line;
- playbooks/diagnose.yml calls the deployment healthy;
- sse_nginx_locations_state absent gives the site file back exactly as it was, and
  present puts the include line back (the scenario ends converged).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from sse_testinfra import run_playbook

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
    assert answers(host) == before


def test_the_stream_answers_through_the_sites_own_tls(host) -> None:
    out = run_on_target(
        host,
        "curl -sS -N --max-time 3 --cacert /etc/ssl/certs/app.example.crt "
        "--resolve app.example:443:127.0.0.1 https://app.example/notify/events || true",
    )
    assert out.startswith(":ok"), out


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
    shadow = "    location ~ ^/notify/ { return 410; }"
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
        quoted = f"{SITE_AS_NGINX_READS_IT}:{line}: location ~ ^/notify/ would serve"
        assert f"{quoted} the SSE path /notify/events" in text, text[-2000:]
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
    served = report["nginx"]["paths"]["/notify/events"]["servers"][0]
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
