"""Role sse_verify rejects bad input before the probe runs.

Same harness as test_backend_bad_input.py (see its docstring): one check-mode
`ansible-playbook` per case against a local host whose Python does not exist, read back
through the `ansible.posix.json` callback. A case passes when the run fails in the
argument-spec validation or `tasks/preflight.yml`, every failure message names the
variable, and the probe ("Hold the stream open through nginx") never ran.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from test_backend_bad_input import (
    Case,
    Run,
    assert_control_passes,
    assert_rejected_in_preflight,
    assert_stopped_by_tripwire,
    start_runs,
)

ROLE = "sse_verify"
PROBE_TASK = "Hold the stream open through nginx"

BAD = [
    Case("hold-0", {"sse_verify_hold": 0}, "sse_verify_hold"),
    Case("hold-abc", {"sse_verify_hold": "abc"}, "sse_verify_hold"),
    Case("keepalive--1", {"sse_verify_keepalive_interval": -1}, "sse_verify_keepalive_interval"),
    Case("url-ftp", {"sse_verify_url": "ftp://x"}, "sse_verify_url"),
    Case("url-not-a-url", {"sse_verify_url": "not a url"}, "sse_verify_url"),
    Case(
        "controller-url-empty",
        {"sse_verify_from_controller": True, "sse_verify_controller_url": ""},
        "sse_verify_controller_url",
    ),
]
# Bad input that once slipped through preflight (kept apart to say why it must not).
GAPS = [
    pytest.param(
        Case("hold-inf", {"sse_verify_hold": "inf"}, "sse_verify_hold"),
        # passed preflight once; the probe refused it only when it ran
    ),
    pytest.param(
        Case(
            "hold-within-keepalive-limit",
            {"sse_verify_hold": 10, "sse_verify_keepalive_interval": 30},
            "sse_verify_hold",
        ),
        # a hold within interval + tolerance never requires a keepalive, so the
        # keepalive check would pass without proving anything
    ),
]
CONTROL = Case("control-preflight", {}, tasks_from="preflight")
TRIPWIRE = Case("control-tripwire", {})


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[Run]]:
    gaps = [param.values[0] for param in GAPS]
    return start_runs(ROLE, [*BAD, *gaps, CONTROL, TRIPWIRE], request, tmp_path_factory)


@pytest.mark.parametrize("case", [*BAD, *GAPS], ids=lambda case: case.id)
def test_rejected_before_the_probe(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_rejected_in_preflight(runs[case.id].result(), ROLE, [PROBE_TASK])


@pytest.mark.parametrize("case", [CONTROL], ids=lambda case: case.id)
def test_valid_input_passes_preflight(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_control_passes(runs[case.id].result(), ROLE)


@pytest.mark.parametrize("case", [TRIPWIRE], ids=lambda case: case.id)
def test_harness_sees_the_probe_run(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_stopped_by_tripwire(runs[case.id].result(), ROLE, PROBE_TASK)
