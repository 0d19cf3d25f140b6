"""The rolling release (playbooks/backend.yml) rejects bad settings before any host changes.

Each case runs the project's playbooks/backend.yml, in check mode, against local hosts
whose Python does not exist (the tripwire of test_backend_bad_input.py: the first module
that would run on a host fails), and reads the run back through the `ansible.posix.json`
callback. A bad case passes when the run fails in the release's own checks (role
sse_release's preflight, with the filters of sse.stack's release.py), each failure naming
the variable, before any module ran on a host; a control passes those checks and is
stopped by the tripwire at the first task that reads a host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_backend_bad_input import RC_HOST_FAILED, TRIPWIRE_PYTHON, Played, run_ansible_json

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "backend.yml"
SETTINGS_CHECK = "Check the batch size and the failures tolerated per batch"
UPSTREAM_CHECK = "Check each backend is in the upstream of a proxy"
# the first task that runs a module on a host (the tripwire stops it)
FIRST_HOST_TASK = "Look for the upstream file of sse_nginx"

ONE_HOST = {"sse-target": {"groups": ["sse_backends", "sse_proxies"], "vars": {}}}
TWO_BACKENDS = {
    "sse-proxy": {
        "groups": ["sse_proxies"],
        "vars": {"sse_nginx_upstreams": ["10.0.0.1:8000", "10.0.0.2:8000"]},
    },
    "sse-b1": {"groups": ["sse_backends"], "vars": {"sse_backend_bind": "0.0.0.0:8000"}},
    "sse-b2": {"groups": ["sse_backends"], "vars": {"sse_backend_bind": "0.0.0.0:8000"}},
}


@dataclass(frozen=True)
class Case:
    id: str
    extra_vars: dict[str, Any]
    names: str = ""  # the variable every failure must name ("" for a control)
    hosts: dict[str, dict[str, Any]] = field(default_factory=lambda: ONE_HOST)
    failing_task: str = SETTINGS_CHECK
    inventory: Path | None = None  # a real inventory instead of `hosts` (tripwired on top)
    also: tuple[str, ...] = ()  # more text every failure message must hold


@dataclass
class Run(Played):
    case: Case


# Per host, not in group all: the implicit localhost (the controller-side checks delegated
# to it) takes group all's variables and must keep a working Python (and no become: the
# plays become root, this machine may have no sudo).
TRIPWIRE_CONNECTION = {
    "ansible_connection": "local",
    "ansible_python_interpreter": TRIPWIRE_PYTHON,
    "ansible_become": False,
}


def _inventory(hosts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {
        "sse_backends": {"hosts": {}},
        "sse_proxies": {"hosts": {}},
    }
    for name, host in hosts.items():
        for group in host["groups"]:
            groups[group]["hosts"][name] = {**TRIPWIRE_CONNECTION, **host["vars"]}
    return {"all": {"children": groups}}


def _tripwired(inventory: Path) -> dict[str, Any]:
    """The hosts of a real inventory again, with only the tripwire's connection: given
    after it, this source's host variables win and the real group_vars stay."""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
    )
    hosts = json.loads(listed.stdout)["_meta"]["hostvars"]
    return {"all": {"hosts": dict.fromkeys(hosts, TRIPWIRE_CONNECTION)}}


def run_release(case: Case, workdir: Path) -> Run:
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = workdir / "inventory.json"  # JSON is YAML
    sources = ["-i", str(inventory)]
    if case.inventory is None:
        inventory.write_text(json.dumps(_inventory(case.hosts)))
    else:
        inventory.write_text(json.dumps(_tripwired(case.inventory)))
        sources = ["-i", str(case.inventory), *sources]
    extra = workdir / "extra.json"
    extra.write_text(json.dumps(case.extra_vars))
    played = run_ansible_json(workdir, ["--check", *sources, str(PLAYBOOK), "-e", f"@{extra}"])
    return Run(case=case, **vars(played))


BAD = [
    Case("serial-0", {"sse_release_serial": 0}, "sse_release_serial"),
    Case("serial-negative", {"sse_release_serial": -1}, "sse_release_serial"),
    Case("serial-fraction", {"sse_release_serial": 1.5}, "sse_release_serial"),
    Case("serial-word", {"sse_release_serial": "all"}, "sse_release_serial"),
    Case("serial-0-percent", {"sse_release_serial": "0%"}, "sse_release_serial"),
    Case("serial-101-percent", {"sse_release_serial": "101%"}, "sse_release_serial"),
    Case("serial-empty", {"sse_release_serial": ""}, "sse_release_serial"),
    Case(
        "max-fail-negative",
        {"sse_release_max_fail_percentage": -1},
        "sse_release_max_fail_percentage",
    ),
    Case(
        "max-fail-101",
        {"sse_release_max_fail_percentage": 101},
        "sse_release_max_fail_percentage",
    ),
    Case(
        "max-fail-word",
        {"sse_release_max_fail_percentage": "some"},
        "sse_release_max_fail_percentage",
    ),
    Case(
        "max-fail-with-percent-sign",
        {"sse_release_max_fail_percentage": "50%"},
        "sse_release_max_fail_percentage",
    ),
    Case(
        "backend-in-no-upstream",
        {},
        "sse_release_upstream",
        hosts=TWO_BACKENDS,
        failing_task=UPSTREAM_CHECK,
        also=("sse-b1 (sse-b1:8000), sse-b2 (sse-b2:8000)", "10.0.0.1:8000, 10.0.0.2:8000"),
    ),
    # a number passes the argument spec's str; the filter that matches backends to
    # upstreams (sse.stack.sse_release_unfronted) refuses it, naming the variable and host
    Case(
        "upstream-a-number",
        {},
        "sse_release_upstream",
        hosts={
            **TWO_BACKENDS,
            "sse-b1": {
                "groups": ["sse_backends"],
                "vars": {"sse_backend_bind": "0.0.0.0:8000", "sse_release_upstream": 8000},
            },
        },
        failing_task=UPSTREAM_CHECK,
        also=("sse-b1", "not a host:port string"),
    ),
]
CONTROLS = [
    Case("defaults", {}),
    Case("serial-2", {"sse_release_serial": 2}),
    Case("serial-2-as-text", {"sse_release_serial": "2"}),
    Case("serial-50-percent", {"sse_release_serial": "50%"}),
    Case("serial-100-percent", {"sse_release_serial": "100%"}),
    Case("max-fail-0", {"sse_release_max_fail_percentage": 0}),
    Case("max-fail-25.5", {"sse_release_max_fail_percentage": 25.5}),
    Case("max-fail-100", {"sse_release_max_fail_percentage": 100}),
    Case(
        "two-backends-with-upstreams",
        {},
        hosts={
            **TWO_BACKENDS,
            "sse-b1": {
                "groups": ["sse_backends"],
                "vars": {
                    "sse_backend_bind": "0.0.0.0:8000",
                    "sse_release_upstream": "10.0.0.1:8000",
                },
            },
            "sse-b2": {
                "groups": ["sse_backends"],
                "vars": {"sse_backend_bind": "0.0.0.0:8000", "ansible_host": "10.0.0.2"},
            },
        },
    ),
    # inventory/example as it is: its wiring (upstreams by ansible_host, bind, peers)
    # passes every check of the release; only the secret and the TLS files it names
    # (which exist on a real controller) are given here
    Case(
        "inventory-example",
        {
            "vault_sse_backend_publish_token": "from-ansible-vault",
            "sse_nginx_tls_cert": "",
            "sse_nginx_tls_key": "",
        },
        inventory=ROOT / "inventory" / "example",
    ),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Run]]:
    pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 2)
    futures = {
        case.id: pool.submit(
            run_release, case, tmp_path_factory.mktemp(re.sub(r"\W+", "_", case.id))
        )
        for case in BAD + CONTROLS
    }
    yield futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_rejected_before_any_host_changes(case: Case, runs: dict[str, Future[Run]]) -> None:
    run = runs[case.id].result()
    details = run.describe()
    assert run.rc == RC_HOST_FAILED, details
    failed = [t for t in run.tasks if t.status == "failed"]
    assert failed and all(case.failing_task in t.name for t in failed), details
    for task in failed:
        for message in task.messages:
            assert case.names in message, f"{message!r} does not name {case.names}\n{details}"
            for text in case.also:
                assert text in message, f"{message!r} lacks {text!r}\n{details}"
    assert FIRST_HOST_TASK not in " ".join(t.name for t in run.tasks), details
    assert all(host["changed"] == 0 for host in run.stats.values()), details


@pytest.mark.parametrize("case", CONTROLS, ids=lambda case: case.id)
def test_valid_settings_pass_the_checks(case: Case, runs: dict[str, Future[Run]]) -> None:
    """The checks pass; the first task that reads a host is where the tripwire stops it."""
    run = runs[case.id].result()
    details = run.describe()
    assert run.rc == RC_HOST_FAILED, details
    failed = [t for t in run.tasks if t.status == "failed"]
    assert failed and all(FIRST_HOST_TASK in t.name for t in failed), details
    assert TRIPWIRE_PYTHON in " ".join(m for t in failed for m in t.messages), details
    assert all(host["changed"] == 0 for host in run.stats.values()), details
