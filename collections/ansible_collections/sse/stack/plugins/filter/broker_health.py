"""Filters that judge a backend's GET /healthz answer for the verification's `broker` check.

The reference app (app/src/sse_app/main.py) answers /healthz with 200 either way: with a
broker (SSE_BROKER_URL) `{"status": "ok" | "broker_down", "broker": {"state": "connecting" |
"up" | "down", "since": <unix time>, "stream": ..., "last_id": ..., "last_error": ...}}`,
without one `{"status": "ok"}`. The app never puts the broker's URL (it holds the password)
in that answer, and these filters repeat only the state, since and last error.

    {{ answer | sse.stack.broker_health_state }}           -> none, connecting, up, down, ...
    {{ answer | sse.stack.broker_health_problem(url) }}    -> "" when the check passes

`answer` is the result of ansible.builtin.uri with return_content (its `status` and, for a
JSON body, `json`). The check passes when the backend reports no broker: no answer, not
200, not JSON or no `broker` key (an app of its own without /healthz, or a backend run
without a broker); those are for the other checks (backend_release, the stream) to judge.
It fails when a broker is reported and it is not up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

# what a message holds of the app's last_error at most (it is the app's own, already short)
MAX_ERROR = 300


def _broker(answer: object) -> Mapping | None:
    """The `broker` mapping of a 200 JSON answer, or None when it reports no broker."""
    if not isinstance(answer, Mapping) or answer.get("status") != 200:
        return None
    body = answer.get("json")
    if not isinstance(body, Mapping):
        return None
    broker = body.get("broker")
    return broker if isinstance(broker, Mapping) else None


def broker_health_state(answer: object) -> str:
    """`none` when no broker is reported, else the broker's state as the app says it."""
    broker = _broker(answer)
    if broker is None:
        return "none"
    return str(broker.get("state") or "unknown")


def _since(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "an unknown time"
    try:
        when = datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def broker_health_problem(answer: object, url: str = "/healthz") -> str:
    """Why the `broker` check fails ("" when it passes): the backend reports a broker that
    is not up (its /healthz status is not ok, or the broker's state is not up)."""
    broker = _broker(answer)
    if broker is None:
        return ""
    body = answer["json"]  # type: ignore[index]  # _broker checked it is a mapping
    status = str(body.get("status"))
    state = str(broker.get("state") or "unknown")
    if status == "ok" and state == "up":
        return ""
    error = " ".join(str(broker.get("last_error") or "none").split())[:MAX_ERROR]
    return (
        f"the backend's event broker is {state}, not up (GET {url} answered status {status},"
        f" broker state {state} since {_since(broker.get('since'))}, last error: {error})"
    )


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "broker_health_state": broker_health_state,
            "broker_health_problem": broker_health_problem,
        }
