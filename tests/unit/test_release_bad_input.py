"""The rolling release (playbooks/backend.yml) rejects bad settings before any host changes.

Each case runs the project's playbooks/backend.yml, in check mode, against tripwired local
hosts (tripwire.py: a host's interpreter records and fails any module run), or a real
inventory's hosts tripwired on top of it, and reads the run back through the
`ansible.posix.json` callback. A bad case passes when the run fails only in the release's
own checks (role sse_release's preflight, with the filters of sse.stack's release.py), in
the task of the case, each failure naming the variable (and holding the `also` texts), no
module ran on a host and nothing changed; a control passes those checks and is stopped by
the tripwire at the first task that reads a host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tripwire import (
    ONE_HOST,
    ROOT,
    Played,
    assert_refused,
    assert_tripped_at,
    run_playbook,
    start_runs,
)

PLAYBOOK = ROOT / "playbooks" / "backend.yml"
PREFLIGHT = ("roles/sse_release/tasks/preflight.yml",)
SETTINGS_CHECK = "Check the batch size and the failures tolerated per batch"
UPSTREAM_CHECK = "Check each backend is in the upstream of a proxy"
# the first task that runs a module on a host (the tripwire stops it)
FIRST_HOST_TASK = "Look for the upstream file of sse_nginx"

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


def run_release(cases: list[Case], workdir: Path) -> dict[str, Played]:
    """The playbook for one case (its hosts, or its inventory tripwired), in check mode."""
    (case,) = cases
    played = run_playbook(workdir, PLAYBOOK, case.extra_vars, case.hosts, inventory=case.inventory)
    return {case.id: played}


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
    # inventory/example as it is: its wiring (upstreams by ansible_host, bind, broker URL)
    # passes every check of the release; only the secrets and the TLS files it names
    # (which exist on a real controller) are given here
    Case(
        "inventory-example",
        {
            "vault_sse_backend_publish_token": "from-ansible-vault",
            "vault_sse_broker_password": "from-ansible-vault-0123456789",
            "sse_nginx_tls_cert": "",
            "sse_nginx_tls_key": "",
        },
        inventory=ROOT / "inventory" / "example",
    ),
]


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    # every case in a run of its own: their hosts and inventories differ
    return start_runs(request, tmp_path_factory, BAD + CONTROLS, run_release, key=lambda c: c.id)


@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_rejected_before_any_host_changes(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert_refused(played, case.names, PREFLIGHT, case.also)
    failed = played.failed()
    assert all(case.failing_task in task.name for task in failed), details
    for message in played.failures():  # every message holds every `also` text
        for text in case.also:
            assert text in message, f"{message!r} lacks {text!r}\n{details}"
    assert FIRST_HOST_TASK not in " ".join(task.name for task in played.tasks), details


@pytest.mark.parametrize("case", CONTROLS, ids=lambda case: case.id)
def test_valid_settings_pass_the_checks(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    """The checks pass; the first task that reads a host is where the tripwire stops it."""
    assert_tripped_at(runs[case.id](), FIRST_HOST_TASK)
