"""The broker_health filters judge a backend's /healthz answer for the check `broker`.

The answers are the reference app's (app/src/sse_app/main.py healthz), wrapped as
ansible.builtin.uri returns them; tests/unit/test_verify_broker.py runs the same filters
inside the roles against the real app.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

# run from its file: the editable package of the repository holds module_utils only
PLUGIN = runpy.run_path(
    str(
        Path(__file__).resolve().parents[2]
        / "collections/ansible_collections/sse/stack/plugins/filter/broker_health.py"
    )
)
FilterModule = PLUGIN["FilterModule"]
problem = PLUGIN["broker_health_problem"]
state = PLUGIN["broker_health_state"]
URL = "http://127.0.0.1:8000/healthz"


def answer(body: Any, status: int = 200) -> dict[str, Any]:
    return {"status": status, "json": body} if body is not None else {"status": status}


def broker(state_: str, status: str, last_error: str | None = None) -> dict[str, Any]:
    return answer(
        {
            "status": status,
            "broker": {
                "state": state_,
                "since": 1764681600.25,  # 2025-12-02T13:20:00Z
                "stream": "sse:events",
                "last_id": None,
                "last_error": last_error,
            },
        }
    )


def test_down_broker_fails_with_state_since_and_last_error() -> None:
    error = "ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused."
    said = problem(broker("down", "broker_down", error), URL)
    assert said == (
        "the backend's event broker is down, not up (GET http://127.0.0.1:8000/healthz"
        " answered status broker_down, broker state down since 2025-12-02T13:20:00Z,"
        f" last error: {error})"
    )
    assert state(broker("down", "broker_down", error)) == "down"


@pytest.mark.parametrize(
    ("reported", "expected_state"),
    [
        (broker("connecting", "broker_down"), "connecting"),
        (broker("up", "broker_down"), "up"),  # the app's own verdict counts too
        (answer({"status": "broker_down", "broker": {}}), "unknown"),
        (answer({"status": "ok", "broker": {"state": "down"}}), "down"),
    ],
)
def test_any_reported_broker_not_up_fails(reported: dict[str, Any], expected_state: str) -> None:
    said = problem(reported, URL)
    assert said.startswith("the backend's event broker is ") and URL in said, said
    assert state(reported) == expected_state


@pytest.mark.parametrize(
    "reported",
    [
        broker("up", "ok"),
        answer({"status": "ok"}),  # no broker configured
        answer({"status": "ok", "peers": {}}),  # the release before issue 17
        answer(None, 404),  # an app of its own without /healthz
        answer(None, -1),  # nothing answered: the other checks say so
        answer(["not", "a", "mapping"]),
        answer({"status": "ok", "broker": "up"}),
        "not a uri result",
    ],
)
def test_no_broker_reported_or_up_passes(reported: Any) -> None:
    assert problem(reported, URL) == ""
    assert state(reported) in ("none", "up")


def test_a_long_or_multiline_last_error_is_one_short_line() -> None:
    said = problem(broker("down", "broker_down", "x" * 1000 + "\nsecond line"), URL)
    assert "\n" not in said and len(said) < 500


def test_bad_since_is_said_as_unknown() -> None:
    reported = broker("down", "broker_down", "e")
    reported["json"]["broker"]["since"] = "yesterday"
    assert "since an unknown time" in problem(reported, URL)


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {"broker_health_state", "broker_health_problem"}
