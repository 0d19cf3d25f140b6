"""Bad input to sse_broker, and to sse_backend's broker inputs, is refused before any
module runs on a host, naming the variable and never showing a secret.

The harness of test_nginx_bad_input.py (tripwire.py): each case is a tripwired host named
after it, one ansible-playbook run per role and entry point (`preflight` alone, where no
argument spec applies; `main`: argument spec, preflight, then the host). Valid cases pass
every check and trip at the role's first host task. Cost: about 20 s (four
ansible-playbook runs side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tripwire import Case, Played, assert_case, batch_runner, start_runs

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
