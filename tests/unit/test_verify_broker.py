"""The check `broker` against the real app: the release's direct check fails naming it.

Three real backends (Gunicorn + the Uvicorn worker, as deployed, on loopback): one whose
SSE_BROKER_URL points at a closed port (its /healthz says broker_down), one with a real
redis-server (tests/app/redis_helpers.py) and one without a broker. One ansible-playbook
run (local connection, a host per backend) includes roles/sse_release/tasks/verify_direct.yml
as a batch does: sse_verify's stream probe holds each stream (it passes on all three: a
backend keeps streams open with keepalives without its broker) and the check `broker`
(sse_backend's assert_broker_up) fails only on the first, named in the failure message and
in sse_verify_failed_checks, without printing the broker's password. Cost: about 15 s.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from tripwire import RC_HOST_FAILED, ROOT, Played, run_ansible_json

sys.path.insert(0, str(ROOT / "tests" / "app"))
from redis_helpers import PASSWORD as UP_PASSWORD
from redis_helpers import RedisServer, free_port
from sse_helpers import Gunicorn, server_env

DOWN_PASSWORD = "h2-never-printed-5b7c"
KEEPALIVE = 0.5
EXPECTED = (
    "SSE verification failed on down: broker: the backend's event broker is down, not up"
    " (GET http://127.0.0.1:{port}/healthz answered status broker_down, broker state down since "
)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gunicorn]]:
    folder = tmp_path_factory.mktemp("backends")
    redis = RedisServer(folder / "redis").start()
    urls = {
        "down": f"redis://:{DOWN_PASSWORD}@127.0.0.1:{free_port()}/0",  # nothing listens
        "up": redis.url,
        "none": "",
    }
    started: dict[str, Gunicorn] = {}
    try:
        for name, url in urls.items():
            env = server_env(SSE_KEEPALIVE_INTERVAL=str(KEEPALIVE), SSE_BROKER_URL=url)
            started[name] = Gunicorn.bound(env, folder / f"{name}.log")
        yield started
    finally:
        for server in started.values():
            server.stop()
        redis.stop()


@pytest.fixture(scope="module")
def played(backends: dict[str, Gunicorn], tmp_path_factory: pytest.TempPathFactory) -> Played:
    workdir = tmp_path_factory.mktemp("direct-check")
    hosts = {
        name: {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "sse_backend_bind": f"127.0.0.1:{server.port}",
            # what sse_release's preflight notes for a backend bound there
            "__sse_release_backend": {"url": f"http://127.0.0.1:{server.port}/notify/events"},
            "sse_verify_keepalive_interval": KEEPALIVE,
            "sse_verify_tolerance": 1,
            "sse_verify_hold": 2.5,
        }
        for name, server in backends.items()
    }
    inventory = workdir / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    playbook = workdir / "direct.yml"
    playbook.write_text(
        "- name: The release's direct check of each backend\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Include the direct check\n"
        "      ansible.builtin.include_tasks: "
        f"{ROOT / 'roles/sse_release/tasks/verify_direct.yml'}\n"
    )
    return run_ansible_json(workdir, ["-i", str(inventory), str(playbook)])


def facts(played: Played, host: str, task_end: str) -> dict[str, Any]:
    report = json.loads(played.stdout)
    for play in report["plays"]:
        for entry in play["tasks"]:
            if entry["task"]["name"].endswith(task_end) and host in entry["hosts"]:
                return dict(entry["hosts"][host].get("ansible_facts", {}))
    raise AssertionError(f"no {task_end!r} on {host}\n{played.describe()}")


def test_a_backend_whose_broker_is_down_fails_naming_broker(
    played: Played, backends: dict[str, Gunicorn]
) -> None:
    details = played.describe()
    assert played.rc == RC_HOST_FAILED, details
    failed = played.failed()
    # sse_backend's assert (rescued: recorded as the check broker), then sse_verify's verdict
    assert [(task.host, task.name.split(" : ")[-1]) for task in failed] == [
        ("down", "Fail unless the service's event broker is up (or it reports none)"),
        ("down", "Fail listing every failed check"),
    ], details
    (message,) = failed[-1].messages
    assert message.startswith(EXPECTED.format(port=backends["down"].port)), message
    assert "last error: ConnectionError: Error 111 connecting to 127.0.0.1:" in message, message
    checks = facts(played, "down", "Publish the names of the failed checks")
    assert checks["sse_verify_failed_checks"] == ["broker"], details  # the stream passed


def test_backends_with_their_broker_up_or_none_pass(played: Played) -> None:
    for host in ("up", "none"):
        checks = facts(played, host, "Publish the names of the failed checks")
        assert checks["sse_verify_failed_checks"] == [], played.describe()
        assert played.stats[host]["failures"] == 0, played.describe()


def test_no_broker_password_is_printed(played: Played) -> None:
    said = played.stdout + played.stderr
    assert DOWN_PASSWORD not in said and UP_PASSWORD not in said
