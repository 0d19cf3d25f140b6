"""Bad input to sse_broker, and to sse_backend's broker inputs, is refused before any
module runs on a host, naming the variable and never showing a secret.

The harness of test_nginx_bad_input.py (tripwire.py): each case is a tripwired host named
after it, one ansible-playbook run per role and entry point (`preflight` alone, where no
argument spec applies; `main`: argument spec, preflight, then the host). Valid cases pass
every check and trip at the role's first host task.

Then the broker in the whole job: site.yml on a fleet (a proxy, two backends with the
broker's URL and two workers, the broker on a host of its own or on the proxy) whose
broker input is bad stops in its first play, before any module ran on any host; with
valid input it passes every check and trips at the first play's first host task. And
playbooks/broker.yml alone checks its inputs. Cost: about 25 s (eight ansible-playbook
runs, four side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tripwire import (
    ROOT,
    SITE_FIRST_PLAY,
    Case,
    Played,
    assert_case,
    assert_refused,
    assert_tripped_at,
    batch_runner,
    run_playbook,
    start_runs,
)

PASSWORD = "Br0ker-pass.word_0123456789"
BROKER_PREFLIGHT = ("roles/sse_broker/tasks/preflight.yml",)
BROKER_FIRST = {"main": "Read the distribution release"}
BACKEND_PREFLIGHT = ("roles/sse_backend/tasks/preflight.yml",)
# the first task that reaches a host: the build reads the target's Python (tasks/build.yml)
BACKEND_FIRST = {"main": "Read the target's Python, machine and C library"}


def broker(
    case_id: str,
    variables: dict[str, Any],
    names: str = "",
    *also: str,
    entry: str = "preflight",
    secret: str = "",
) -> Case:
    """A case of sse_broker, with a valid password unless the case sets one."""
    return Case(case_id, {"sse_broker_password": PASSWORD, **variables}, names, entry, also, secret)


BROKER_BAD = [
    broker("password-unset", {"sse_broker_password": ""}, "sse_broker_password", "16-512"),
    broker(
        "password-short",
        {"sse_broker_password": "Sh0rt-secret"},
        "sse_broker_password",
        secret="Sh0rt-secret",
    ),
    # '@' and ':' would break the backends' redis:// URL; a newline a second config line
    broker(
        "password-at",
        {"sse_broker_password": "p@ss-S3cretS3cret"},
        "sse_broker_password",
        secret="S3cretS3cret",
    ),
    broker(
        "password-newline",
        {"sse_broker_password": "S3cretS3cretS3cret\nrename-command CONFIG x"},
        "sse_broker_password",
        secret="S3cretS3cretS3cret",
        entry="main",
    ),
    broker("password-number", {"sse_broker_password": 12345678901234567890}, "sse_broker_password"),
    broker("bind-string", {"sse_broker_bind": "127.0.0.1"}, "sse_broker_bind", "expected a list"),
    broker("bind-name", {"sse_broker_bind": ["localhost"]}, "sse_broker_bind", "numeric"),
    broker("bind-port", {"sse_broker_bind": ["127.0.0.1:6379"]}, "sse_broker_bind", "numeric"),
    broker("bind-empty", {"sse_broker_bind": []}, "sse_broker_bind"),
    broker("bind-twice", {"sse_broker_bind": ["10.0.0.5", "10.0.0.5"]}, "sse_broker_bind"),
    broker("bind-newline", {"sse_broker_bind": ["127.0.0.1\n"]}, "sse_broker_bind[0]", "control"),
    broker("bind-300", {"sse_broker_bind": ["10.0.0.300"]}, "sse_broker_bind"),
    broker("port-0", {"sse_broker_port": 0}, "sse_broker_port"),
    broker("port-70000", {"sse_broker_port": 70000}, "sse_broker_port"),
    broker("port-text", {"sse_broker_port": "6379x"}, "sse_broker_port", "whole number"),
    broker("maxlen-0", {"sse_broker_stream_maxlen": 0}, "sse_broker_stream_maxlen"),
    broker("maxlen-10k", {"sse_broker_stream_maxlen": "10k"}, "sse_broker_stream_maxlen"),
    broker("maxmemory-words", {"sse_broker_maxmemory": "lots"}, "sse_broker_maxmemory"),
    broker("maxmemory-space", {"sse_broker_maxmemory": "256 mb"}, "sse_broker_maxmemory"),
    broker("fsync-no", {"sse_broker_appendfsync": "no"}, "sse_broker_appendfsync", "everysec"),
    broker("server-keydb", {"sse_broker_server": "keydb"}, "sse_broker_server", "valkey"),
    broker("server-keydb-main", {"sse_broker_server": "keydb"}, "sse_broker_server", entry="main"),
]
BROKER_VALID = [
    broker("broker-defaults", {}, entry="main", secret=PASSWORD),
    broker(
        "broker-unusual",
        {
            "sse_broker_bind": ["::1", "10.0.0.5", "0.0.0.0"],
            "sse_broker_port": "6380",
            "sse_broker_maxmemory": "0",
            "sse_broker_stream_maxlen": "50000",
            "sse_broker_appendfsync": "always",
            "sse_broker_server": "auto",
        },
        entry="main",
        secret=PASSWORD,
    ),
    broker("broker-preflight", {}, secret=PASSWORD),
]

BROKER_URL = f"redis://:{PASSWORD}@10.0.0.5:6379/0"
BACKEND_BAD = [
    Case(
        "url-http",
        {"sse_backend_broker_url": f"http://:{PASSWORD}@10.0.0.5/"},
        "sse_backend_broker_url",
        "main",
        ("redis://",),
        PASSWORD,
    ),
    Case(
        "url-newline",
        {"sse_backend_broker_url": BROKER_URL + "\nSSE_PEERS=x:1"},
        "sse_backend_broker_url",
        "main",
        secret=PASSWORD,
    ),
    Case("url-number", {"sse_backend_broker_url": 6379}, "sse_backend_broker_url", "preflight"),
    Case("workers-2-no-broker", {"sse_backend_workers": 2}, "sse_backend_workers", "main"),
]
BACKEND_VALID = [
    Case(
        "workers-4-with-broker",
        {"sse_backend_broker_url": BROKER_URL, "sse_backend_workers": 4},
        entry="main",
        secret=PASSWORD,
    ),
    Case(
        "workers-2-own-app",
        {"sse_backend_workers": 2, "sse_backend_source": "myapp==2.1"},
        entry="preflight",
    ),
]
BROKER_CASES = BROKER_BAD + BROKER_VALID
BACKEND_CASES = BACKEND_BAD + BACKEND_VALID
assert len({c.id for c in BROKER_CASES + BACKEND_CASES}) == len(BROKER_CASES + BACKEND_CASES)


@pytest.fixture(scope="module")
def broker_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, BROKER_CASES, batch_runner("sse_broker"))


@pytest.fixture(scope="module")
def backend_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, BACKEND_CASES, batch_runner("sse_backend"))


@pytest.mark.parametrize("case", BROKER_CASES, ids=lambda case: case.id)
def test_broker_inputs(case: Case, broker_runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(broker_runs[case.id](), case, BROKER_PREFLIGHT, BROKER_FIRST)


@pytest.mark.parametrize("case", BACKEND_CASES, ids=lambda case: case.id)
def test_backend_broker_inputs(case: Case, backend_runs: dict[str, Callable[[], Played]]) -> None:
    assert_case(backend_runs[case.id](), case, BACKEND_PREFLIGHT, BACKEND_FIRST)


# --- the broker in site.yml and in playbooks/broker.yml ---------------------------------

BROKER_HOST = {"sse_broker_password": PASSWORD, "sse_broker_bind": ["10.0.0.9"]}
BACKEND_HOST = {
    "sse_backend_bind": "0.0.0.0:8000",
    "sse_backend_broker_url": f"redis://:{PASSWORD}@10.0.0.9:6379/0",
    "sse_backend_workers": 2,
}
PROXY_HOST = {"sse_nginx_upstreams": ["10.0.0.1:8000", "10.0.0.2:8000"]}
# the first task of site.yml that runs a module on a host (its first play: the tripwire
# stops it there, after every input of every host passed)
SITE_FIRST_HOST_TASK = "Look for the upstream file of sse_nginx"


def fleet(broker_vars: dict[str, Any], broker_on_proxy: bool) -> dict[str, dict[str, Any]]:
    """Two backends behind a proxy; the broker on a host of its own, or on the proxy."""
    backends = {
        f"sse-b{n}": {
            "groups": ["sse_backends"],
            "vars": {**BACKEND_HOST, "ansible_host": f"10.0.0.{n}"},
        }
        for n in (1, 2)
    }
    if broker_on_proxy:
        proxy = {"groups": ["sse_proxies", "sse_brokers"], "vars": {**PROXY_HOST, **broker_vars}}
        return {"sse-proxy": proxy, **backends}
    broker_host = {"sse-broker": {"groups": ["sse_brokers"], "vars": broker_vars}}
    return {"sse-proxy": {"groups": ["sse_proxies"], "vars": PROXY_HOST}, **backends, **broker_host}


@dataclass(frozen=True)
class FleetCase:
    id: str
    playbook: str  # relative to ROOT
    broker_vars: dict[str, Any]
    names: str = ""  # the variable the refusal names ("" for a valid case)
    broker_on_proxy: bool = False
    also: tuple[str, ...] = ()


FLEET_CASES = [
    FleetCase(
        "site-password-short",
        "site.yml",
        {**BROKER_HOST, "sse_broker_password": "Sh0rt-secret"},
        "sse_broker_password",
    ),
    FleetCase(
        "site-bind-name-on-proxy",
        "site.yml",
        {**BROKER_HOST, "sse_broker_bind": ["cluster-proxy"]},
        "sse_broker_bind",
        broker_on_proxy=True,
        also=("numeric",),
    ),
    FleetCase(
        "site-maxmemory-words",
        "site.yml",
        {**BROKER_HOST, "sse_broker_maxmemory": "lots"},
        "sse_broker_maxmemory",
    ),
    FleetCase("site-valid", "site.yml", BROKER_HOST),
    FleetCase("site-valid-on-proxy", "site.yml", BROKER_HOST, broker_on_proxy=True),
    FleetCase(
        "broker-playbook-port-0",
        "playbooks/broker.yml",
        {**BROKER_HOST, "sse_broker_port": 0},
        "sse_broker_port",
    ),
    FleetCase(
        "broker-playbook-password-unset",
        "playbooks/broker.yml",
        {**BROKER_HOST, "sse_broker_password": ""},
        "sse_broker_password",
        broker_on_proxy=True,
    ),
    FleetCase("broker-playbook-valid", "playbooks/broker.yml", BROKER_HOST),
]


def run_fleet(cases: list[FleetCase], workdir: Path) -> dict[str, Played]:
    (case,) = cases
    hosts = fleet(case.broker_vars, case.broker_on_proxy)
    return {case.id: run_playbook(workdir, ROOT / case.playbook, {}, hosts)}


@pytest.fixture(scope="module")
def fleet_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, FLEET_CASES, run_fleet, key=lambda c: c.id)


@pytest.mark.parametrize("case", FLEET_CASES, ids=lambda case: case.id)
def test_fleet_broker_inputs(case: FleetCase, fleet_runs: dict[str, Callable[[], Played]]) -> None:
    """A bad broker input stops the run before a module ran on any host (site.yml: in its
    first play, whose checks cover the broker); a valid one passes every check."""
    played = fleet_runs[case.id]()
    details = played.describe()
    assert PASSWORD not in played.stdout + played.stderr, f"the password was printed\n{details}"
    site = case.playbook == "site.yml"
    if case.names:
        where = (*BROKER_PREFLIGHT, *SITE_FIRST_PLAY) if site else BROKER_PREFLIGHT
        assert_refused(played, case.names, where, case.also)
        broker = "sse-proxy" if case.broker_on_proxy else "sse-broker"
        assert {task.host for task in played.failed()} == {broker}, details
        if site:  # every host of the fleet was in the play the refusal stopped
            assert {task.host for task in played.tasks} == {"sse-proxy", "sse-b1", "sse-b2", broker}
    elif site:
        assert_tripped_at(played, SITE_FIRST_HOST_TASK)
        # the broker's checks ran (and passed) in that first play, before it
        checked = [t for t in played.tasks if t.path.startswith(str(ROOT / BROKER_PREFLIGHT[0]))]
        assert checked and all(t.status == "ok" for t in checked), details
    else:
        assert_tripped_at(played, BROKER_FIRST["main"])
