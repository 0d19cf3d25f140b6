"""Bad input to the sse_nginx role is rejected before anything changes, naming the variable.

Each case applies the role to `localhost` (`-c local`, no facts, no root) with one bad
variable and expects ansible-playbook to fail in argument validation or in preflight.yml,
before the first host-changing task ("Install nginx") runs. No containers: argument
validation and the preflight checks run on the controller only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_CHANGE = "Install nginx"
PREFLIGHT_UPSTREAMS = "preflight_upstreams.yml"

PLAYBOOK = """\
- name: Apply sse_nginx with one bad input
  hosts: all
  gather_facts: false
  roles:
    - role: sse_nginx
"""


def _files(tmp: Path) -> tuple[str, str]:
    cert, key = tmp / "site.crt", tmp / "site.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return str(cert), str(key)


# id -> (extra vars, text the output must contain: the variable and the complaint)
def cases(cert: str, key: str, missing: str) -> dict[str, tuple[dict, list[str]]]:
    loc = {"path": "/notify/events", "read_timeout": "1h", "send_timeout": "1h"}
    return {
        "wrong-type-int": (
            {"sse_nginx_worker_connections": "many"},
            ["sse_nginx_worker_connections", "convert to int"],
        ),
        "wrong-type-list": (
            {"sse_nginx_sse_locations": {"path": "/notify/events"}},
            ["sse_nginx_sse_locations", "list"],
        ),
        "location-missing-path": (
            {"sse_nginx_sse_locations": [{"read_timeout": "1h"}]},
            ["sse_nginx_sse_locations", "path"],
        ),
        "location-unknown-key": (
            {"sse_nginx_sse_locations": [{**loc, "buffering": "on"}]},
            ["sse_nginx_sse_locations.buffering"],
        ),
        "location-path-relative": (
            {"sse_nginx_sse_locations": [{**loc, "path": "notify/events"}]},
            ["sse_nginx_sse_locations[0].path", "must start"],
        ),
        "location-path-duplicate": (
            {"sse_nginx_sse_locations": [loc, loc]},
            ["sse_nginx_sse_locations[1].path", "only once"],
        ),
        "upstream-without-port": (
            {"sse_nginx_upstreams": ["127.0.0.1:8000", "10.0.0.5"]},
            ["sse_nginx_upstreams[1]", "host:port"],
        ),
        "upstream-port-zero": (
            {"sse_nginx_upstreams": ["backend:0"]},
            ["sse_nginx_upstreams[0]", "1..65535"],
        ),
        "upstream-port-too-big": (
            {"sse_nginx_upstreams": ["[::1]:65536"]},
            ["sse_nginx_upstreams[0]", "1..65535"],
        ),
        "upstreams-empty": ({"sse_nginx_upstreams": []}, ["sse_nginx_upstreams", "at least one"]),
        "down-not-an-upstream": (
            {"sse_nginx_upstreams": ["a:8000", "b:8000"], "sse_nginx_upstreams_down": ["c:8000"]},
            ["sse_nginx_upstreams_down[0]", "not one of sse_nginx_upstreams"],
        ),
        "down-every-upstream": (
            {
                "sse_nginx_upstreams": ["a:8000", "b:8000"],
                "sse_nginx_upstreams_down": ["b:8000", "a:8000"],
            },
            ["sse_nginx_upstreams_down", "every backend", "502"],
        ),
        "cert-without-key": (
            {"sse_nginx_tls_cert": cert},
            ["sse_nginx_tls_cert is set but sse_nginx_tls_key is empty"],
        ),
        "key-without-cert": (
            {"sse_nginx_tls_key": key},
            ["sse_nginx_tls_key is set but sse_nginx_tls_cert is empty"],
        ),
        "cert-not-on-controller": (
            {"sse_nginx_tls_cert": missing, "sse_nginx_tls_key": key},
            ["sse_nginx_tls_cert", "not a file on the controller"],
        ),
        "key-not-on-controller": (
            {"sse_nginx_tls_cert": cert, "sse_nginx_tls_key": missing},
            ["sse_nginx_tls_key", "not a file on the controller"],
        ),
        "timeout-not-nginx-time": (
            {"sse_nginx_read_timeout": "1 hour"},
            ["sse_nginx_read_timeout", "not a valid nginx time"],
        ),
        "location-timeout-not-nginx-time": (
            {"sse_nginx_sse_locations": [{**loc, "send_timeout": "1h30x"}]},
            ["sse_nginx_sse_locations[0].send_timeout", "not a valid nginx time"],
        ),
        "timeout-months-in-ms-directive": (
            {"sse_nginx_sse_locations": [{**loc, "read_timeout": "1M"}]},
            ["sse_nginx_sse_locations[0].read_timeout", "not allowed"],
        ),
        "shutdown-timeout-not-nginx-time": (
            {"sse_nginx_worker_shutdown_timeout": "3 minutes"},
            ["sse_nginx_worker_shutdown_timeout", "not a valid nginx time"],
        ),
        "worker-connections-zero": (
            {"sse_nginx_worker_connections": 0},
            ["sse_nginx_worker_connections (0) must be at least 1"],
        ),
        "read-timeout-below-keepalive": (
            {"sse_nginx_sse_locations": [{**loc, "read_timeout": "20s"}]},
            [
                "sse_nginx_sse_locations[0] (/notify/events): read_timeout 20s is not longer than "
                "sse_nginx_keepalive_interval (30s) + sse_nginx_keepalive_margin (10s)"
            ],
        ),
        "fallback-read-timeout-below-keepalive": (
            {
                "sse_nginx_sse_locations": [{"path": "/a"}],
                "sse_nginx_read_timeout": "40s",
            },
            ["sse_nginx_sse_locations[0] (/a): read_timeout 40s from sse_nginx_read_timeout"],
        ),
        "keepalive-interval-above-read-timeout": (
            {"sse_nginx_keepalive_interval": 3600},
            ["read_timeout 1h (3600s)", "sse_nginx_keepalive_interval (3600s)"],
        ),
        "same-ports": ({"sse_nginx_http_port": 443}, ["sse_nginx_http_port", "two different"]),
        "site-name-with-slash": (
            {"sse_nginx_site_name": "../etc"},
            ["sse_nginx_site_name", "letters, digits"],
        ),
        "staging-inside-etc-nginx": (
            {"sse_nginx_staging_dir": "/etc/nginx/staging"},
            ["sse_nginx_staging_dir", "outside /etc/nginx"],
        ),
    }


def run_role(
    tmp: Path, name: str, extra: dict, *args: str, playbook: str = PLAYBOOK
) -> subprocess.CompletedProcess[str]:
    # one playbook file per case: the cases run in parallel threads, and rewriting one
    # shared file let another case's ansible-playbook read it half-written (empty)
    play = tmp / f"{name}.play.yml"
    play.write_text(playbook)
    vars_file = tmp / f"{name}.json"
    vars_file.write_text(json.dumps(extra))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    return subprocess.run(
        [
            os.path.join(venv_bin, "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(play),
            "-e",
            f"@{vars_file}",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    tmp = tmp_path_factory.mktemp("sse_nginx_bad_input")
    cert, key = _files(tmp)
    return tmp, cert, key, str(tmp / "no-such-file.pem")


@pytest.fixture(scope="module")
def results(paths) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case at once (each is an ansible-playbook start-up, ~2 s of CPU)."""
    tmp, cert, key, missing = paths
    todo = cases(cert, key, missing)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            name: pool.submit(run_role, tmp, name, extra) for name, (extra, _) in todo.items()
        }
        return {name: future.result() for name, future in futures.items()}


CASE_IDS = list(cases("c", "k", "m"))


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_is_rejected_before_any_change(case, paths, results):
    _, cert, key, missing = paths
    _, expected = cases(cert, key, missing)[case]
    proc = results[case]
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for text in expected:
        assert text in " ".join(out.split()), f"{text!r} not in output:\n{out}"
    assert FIRST_CHANGE not in out, f"a host-changing task ran:\n{out}"
    in_validation = "Validation of arguments failed" in out
    in_preflight = any(
        f"roles/sse_nginx/tasks/{name}" in out for name in ("preflight.yml", PREFLIGHT_UPSTREAMS)
    )
    assert in_validation or in_preflight, f"failed outside preflight:\n{out}"


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"sse_nginx_upstreams": ["127.0.0.1:8000", "[::1]:8001", "unix:/run/sse/backend.sock"]},
        {
            "sse_nginx_sse_locations": [{"path": "/a", "read_timeout": "1h30m"}, {"path": "/b"}],
            "sse_nginx_keepalive_interval": 15.5,
            "sse_nginx_worker_shutdown_timeout": "90s",
        },
    ],
    ids=["defaults", "upstream-forms", "locations"],
)
def test_good_input_passes_preflight(extra, paths):
    """The control: the same harness with good input gets through preflight."""
    tmp, *_ = paths
    proc = run_role(tmp, "good", extra, "--tags", "sse_nginx_preflight")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_given_tls_pair_passes_preflight(paths):
    tmp, cert, key, _ = paths
    extra = {"sse_nginx_tls_cert": cert, "sse_nginx_tls_key": key}
    proc = run_role(tmp, "good-tls", extra, "--tags", "sse_nginx_preflight")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# The entry point `upstreams` (a drain) checks its own inputs before it looks at nginx.
UPSTREAMS_PLAYBOOK = """\
- name: Apply sse_nginx's entry point upstreams with one bad input
  hosts: all
  gather_facts: false
  tasks:
    - name: Drain
      ansible.builtin.include_role:
        name: sse_nginx
        tasks_from: upstreams
"""
UPSTREAMS_FIRST_TASK = "Look for the role's live upstream file"
UPSTREAMS_CASES = {
    "upstreams-down-not-an-upstream": (
        {"sse_nginx_upstreams": ["a:8000", "b:8000"], "sse_nginx_upstreams_down": ["a:8001"]},
        ["sse_nginx_upstreams_down[0]", "not one of sse_nginx_upstreams"],
    ),
    "upstreams-down-every-upstream": (
        {"sse_nginx_upstreams": ["a:8000"], "sse_nginx_upstreams_down": ["a:8000"]},
        ["sse_nginx_upstreams_down", "every backend", "502"],
    ),
    "upstreams-bad-upstream": (
        {"sse_nginx_upstreams": ["a"], "sse_nginx_upstreams_down": []},
        ["sse_nginx_upstreams[0]", "host:port"],
    ),
    "upstreams-staging-inside-etc-nginx": (
        {"sse_nginx_staging_dir": "/etc/nginx/x", "sse_nginx_upstreams_down": []},
        ["sse_nginx_staging_dir", "outside /etc/nginx"],
    ),
    "upstreams-wrong-type": (
        {"sse_nginx_upstreams_down": {"a": 1}},
        ["sse_nginx_upstreams_down", "list"],
    ),
}


@pytest.mark.parametrize("case", list(UPSTREAMS_CASES))
def test_upstreams_entry_point_rejects_bad_input(case, paths):
    tmp, *_ = paths
    extra, expected = UPSTREAMS_CASES[case]
    proc = run_role(tmp, case, extra, playbook=UPSTREAMS_PLAYBOOK)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for text in expected:
        assert text in " ".join(out.split()), f"{text!r} not in output:\n{out}"
    assert UPSTREAMS_FIRST_TASK not in out, f"the entry point went past its checks:\n{out}"
