"""The harness works: systemd runs, a lingering user's manager is up, its unit runs."""

import pytest

USER = "smoke"


@pytest.fixture
def user_systemctl(host):
    uid = host.user(USER).uid

    def run(*args: str):
        return host.run(
            f"runuser -u {USER} -- env XDG_RUNTIME_DIR=/run/user/{uid} systemctl --user "
            + " ".join(args)
        )

    return run


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
