"""Bad input through playbooks/rollback.yml and playbooks/diagnose.yml is refused before
any module runs on a managed host, naming the variable; valid input passes every check.

Runs each playbook on a tripwired host (tests/unit/tripwire.py): its interpreter records
and refuses the first module run, so "no module ran" is observed, not assumed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tripwire import ROOT, assert_refused, assert_tripped_at, run_playbook

ROLLBACK = ROOT / "playbooks" / "rollback.yml"
DIAGNOSE = ROOT / "playbooks" / "diagnose.yml"
ROLLBACK_CHECKS = (
    "playbooks/rollback.yml",
    "roles/sse_backend/tasks/preflight.yml",
    "roles/sse_verify/tasks/preflight.yml",
)
DIAGNOSE_CHECKS = ("roles/sse_diagnose/tasks/preflight.yml",)

ROLLBACK_CASES = {
    "rollback-to-a-path": ({"sse_backend_rollback_to": "../../etc"}, "sse_backend_rollback_to"),
    "rollback-to-newline": ({"sse_backend_rollback_to": "1.0.0\n"}, "sse_backend_rollback_to"),
    "rollback-to-a-list": ({"sse_backend_rollback_to": ["1.0.0"]}, "sse_backend_rollback_to"),
    "rollback-root-user": ({"sse_backend_user": "root"}, "sse_backend_user"),
    "rollback-verify-hold-text": ({"sse_verify_hold": "10s"}, "sse_verify_hold"),
    "rollback-verify-url-newline": (
        {"sse_verify_url": "https://localhost/notify/events\n"},
        "sse_verify_url",
    ),
}

DIAGNOSE_CASES = {
    "diagnose-since-newline": ({"sse_diagnose_since": "1h\n"}, "sse_diagnose_since"),
    "diagnose-since-words": ({"sse_diagnose_since": "yesterday"}, "sse_diagnose_since"),
    "diagnose-path-newline": ({"sse_diagnose_paths": ["/notify/events\n"]}, "sse_diagnose_paths"),
    "diagnose-paths-string": ({"sse_diagnose_paths": "/notify/events"}, "sse_diagnose_paths"),
    "diagnose-keepalive-text": (
        {"sse_diagnose_keepalive_interval": "2y"},
        "sse_diagnose_keepalive_interval",
    ),
    "diagnose-url-ftp": ({"sse_diagnose_url": "ftp://localhost/x"}, "sse_diagnose_url"),
    "diagnose-cacert-relative": ({"sse_diagnose_cacert": "ca.crt"}, "sse_diagnose_cacert"),
    "diagnose-resolve-garbage": ({"sse_diagnose_resolve": "localhost"}, "sse_diagnose_resolve"),
}


@pytest.mark.parametrize("case", sorted(ROLLBACK_CASES))
def test_rollback_refuses_bad_input_before_any_host_changes(case: str, tmp_path: Path) -> None:
    variables, names = ROLLBACK_CASES[case]
    played = run_playbook(tmp_path, ROLLBACK, variables)
    assert_refused(played, names, ROLLBACK_CHECKS)


@pytest.mark.parametrize("case", sorted(DIAGNOSE_CASES))
def test_diagnose_refuses_bad_input_before_reading_a_host(case: str, tmp_path: Path) -> None:
    variables, names = DIAGNOSE_CASES[case]
    played = run_playbook(tmp_path, DIAGNOSE, variables)
    assert_refused(played, names, DIAGNOSE_CHECKS)


def test_rollback_with_valid_input_passes_every_check(tmp_path: Path) -> None:
    played = run_playbook(tmp_path, ROLLBACK, {"sse_backend_rollback_to": "1.0.0"})
    assert_tripped_at(played, "Look up the service user")


def test_diagnose_that_cannot_run_fails_the_run(tmp_path: Path) -> None:
    # the module cannot run on the (tripwired) host: a report says so, and so does the
    # exit status (it once ended 0, as if nothing was found)
    played = run_playbook(tmp_path, DIAGNOSE, {"sse_diagnose_report_dir": str(tmp_path / "r")})
    assert played.rc != 0, played.describe()
    assert any("The diagnosis could not run" in m for m in played.failures()), played.describe()
