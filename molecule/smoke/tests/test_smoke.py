"""The harness works: systemd runs, a lingering user's manager is up, its unit runs. And
the backend role's environment values reach the running process byte for byte."""

import json
from pathlib import Path

import pytest

USER = "smoke"
BACKEND_USER = "sse"
BACKEND_UNIT = "sse-backend"
# what converge.yml gave the role; the same file, so the test cannot drift from it
VALUES = json.loads((Path(__file__).resolve().parents[1] / "env_values.json").read_text())


def systemctl_as(host, user: str, *args: str):
    uid = host.user(user).uid
    return host.run(
        f"runuser -u {user} -- env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user "
        + " ".join(args)
    )


@pytest.fixture
def user_systemctl(host):
    return lambda *args: systemctl_as(host, USER, *args)


def test_systemd_is_pid1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-pager").stdout


def test_user_lingers_and_manager_is_up(host):
    uid = host.user(USER).uid
    assert host.file(f"/var/lib/systemd/linger/{USER}").exists
    assert host.service(f"user@{uid}.service").is_running


def test_user_unit_is_active_and_enabled(host, user_systemctl):
    assert user_systemctl("is-active", "smoke-sleeper.service").stdout.strip() == "active"
    assert user_systemctl("is-enabled", "smoke-sleeper.service").stdout.strip() == "enabled"


def test_environment_values_reach_the_process_byte_identical(host):
    # the environment systemd gave the service's main process, read from the kernel
    shown = systemctl_as(host, BACKEND_USER, "show", "-p", "MainPID", "--value", BACKEND_UNIT)
    pid = int(shown.stdout.strip() or 0)
    assert pid > 0, f"{BACKEND_UNIT} has no main process: {shown.stdout}{shown.stderr}"
    # as the service user: root in the container lacks CAP_SYS_PTRACE, which reading
    # another user's /proc/<pid>/environ needs
    read = host.run(f"runuser -u {BACKEND_USER} -- cat /proc/{pid}/environ")
    assert read.rc == 0 and b"SSE_APP_VERSION=" in read.stdout_bytes, read.stderr
    environ = dict(item.split(b"=", 1) for item in read.stdout_bytes.split(b"\0") if b"=" in item)
    expected = {
        **VALUES["sse_backend_env"],
        "SSE_PUBLISH_TOKEN": VALUES["sse_backend_publish_token"],
    }
    differ = {
        name: {"given": value.encode(), "process": environ.get(name.encode())}
        for name, value in expected.items()
        if environ.get(name.encode()) != value.encode()
    }
    assert differ == {}, f"values that did not arrive as given (PID {pid}): {differ}"
