"""pytest plugin shared by every scenario's testinfra tests.

On a failed test it prints the target's journal (system and every user manager), so a
failure in CI can be read without logging in to the container.
"""

from __future__ import annotations

import pytest

JOURNAL_LINES = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    host = getattr(item, "funcargs", {}).get("host")
    if report.when == "call" and report.failed and host is not None:
        journal = host.run(f"journalctl --no-pager -n {JOURNAL_LINES} -o short-precise")
        report.sections.append(("journal (last lines)", journal.stdout + journal.stderr))
    return report
