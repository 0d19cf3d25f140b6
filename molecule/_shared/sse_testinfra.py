"""pytest plugin shared by every scenario's testinfra tests.

- On a failed test it prints the target's journal, so a failure in CI can be read
  without logging in to the container.
- `direct_host()` turns molecule's ansible:// host into a podman:// one: the same
  container, reached with `podman exec` instead of one Ansible run per command, which
  makes a test run several times faster.
"""

from __future__ import annotations

import pytest
import testinfra

JOURNAL_LINES = 80


def direct_host(host):
    """The same target, reached with `podman exec` (it is a podman container)."""
    return testinfra.get_host(f"podman://{host.backend.get_hostname()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    host = getattr(item, "funcargs", {}).get("host")
    if report.when == "call" and report.failed and host is not None:
        journal = host.run(f"journalctl --no-pager -n {JOURNAL_LINES} -o short-precise")
        report.sections.append(("journal (last lines)", journal.stdout + journal.stderr))
    return report
