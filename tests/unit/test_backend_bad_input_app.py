"""Role sse_backend refuses a bad worker class or Gunicorn option before the host changes.

Issue 16 ("your own app"): sse_backend_worker_class and sse_backend_gunicorn_options
become words of the unit's ExecStart= line, so each is checked whole in the preflight,
naming the variable: `sync` is refused saying why (one stream at a time, killed by its
timeout), gthread without threads for streams is refused, and no option can split,
expand or override the unit line (space, quote, `;`, `$`, `%`, backslash, newline; an
option the unit sets itself or any prefix of one, which Gunicorn takes as that option).
Same harness as test_backend_bad_input.py (tripwire.py): one `ansible-playbook` run per
entry point, a tripwired host per case; valid inputs pass the preflight with no module run.
Cost: two playbook runs (main, preflight), about 15 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tripwire import Case, Played, assert_refused, batch_of, batch_runner, start_runs

ROLE = "sse_backend"
PREFLIGHT = ("roles/sse_backend/tasks/preflight.yml",)
WORKER = "sse_backend_worker_class"
OPTIONS = "sse_backend_gunicorn_options"


def bad(case_id: str, variables: dict[str, Any], names: str, *also: str) -> Case:
    """A bad case through the whole role (`main`); `also`: texts the message must hold."""
    return Case(case_id, variables, names, "main", also=also)


def gthread(*options: str) -> dict[str, Any]:
    return {WORKER: "gthread", OPTIONS: list(options)}


BAD = [
    # the incident's first suspect, refused saying why
    bad("worker-sync", {WORKER: "sync"}, WORKER, "one stream at a time", "--timeout"),
    bad("worker-sync-path", {WORKER: "gunicorn.workers.sync.SyncWorker"}, WORKER, "--timeout"),
    bad("worker-unknown", {WORKER: "eventlet"}, WORKER, "gthread"),
    bad("worker-module-path", {WORKER: "myapp.workers:Custom"}, WORKER),
    bad("worker-newline", {WORKER: "gthread\n"}, WORKER),
    bad("gthread-no-threads", gthread(), WORKER, "--threads=N"),
    bad("gthread-one-thread", gthread("--threads=1"), WORKER, "--threads=N"),
    bad("options-a-string", {OPTIONS: "--threads=4"}, OPTIONS),
    bad("options-a-mapping", {OPTIONS: {"threads": 4}}, OPTIONS),
    bad("option-space", gthread("--threads=4", "--timeout 60"), OPTIONS),
    bad("option-semicolon", gthread("--threads=4", "--timeout=60;/bin/sh"), OPTIONS),
    bad("option-dollar", gthread("--threads=4", "--env=HOME=$HOME"), OPTIONS),
    bad("option-percent", gthread("--threads=4", "--env=HOME=%h"), OPTIONS),
    bad("option-quote", gthread("--threads=4", '--env="A=1"'), OPTIONS),
    bad("option-backslash", gthread("--threads=4", "--env=A=\\x41"), OPTIONS),
    bad("option-newline", gthread("--threads=4\nExecStartPre=/bin/sh"), OPTIONS),
    bad("option-short", gthread("--threads=4", "-b"), OPTIONS),
    bad("option-positional", gthread("--threads=4", "other.app:app"), OPTIONS),
    bad("option-bind", gthread("--threads=4", "--bind=0.0.0.0:9000"), OPTIONS, "--bind"),
    bad("option-bind-prefix", gthread("--threads=4", "--bi=0.0.0.0:9000"), OPTIONS, "--bi"),
    bad("option-workers", {OPTIONS: ["--workers=4"]}, OPTIONS, "sse_backend_workers"),
    bad("option-worker-class", {OPTIONS: ["--worker-class=sync"]}, OPTIONS),
    bad("option-control-socket", {OPTIONS: ["--control-socket=/tmp/x"]}, OPTIONS),
    bad("option-config", {OPTIONS: ["--config=/tmp/gunicorn.conf.py"]}, OPTIONS),
    bad("option-daemon", {OPTIONS: ["--daemon"]}, OPTIONS),
]
# Valid input, preflight only: each worker class the role accepts, with options.
GOOD = [
    Case("good-gthread", gthread("--threads=32", "--timeout=0", "--keep-alive=5"), "", "preflight"),
    Case("good-gevent", {WORKER: "gevent", OPTIONS: ["--worker-connections=500"]}, "", "preflight"),
    Case("good-uvicorn", {WORKER: "uvicorn_worker.UvicornWorker"}, "", "preflight"),
    Case(
        "good-uvicorn-options",
        {
            WORKER: "uvicorn.workers.UvicornH11Worker",
            OPTIONS: ["--forwarded-allow-ips=127.0.0.1,10.0.0.1", "--max-requests=1000"],
        },
        "",
        "preflight",
    ),
]
ALL = [*BAD, *GOOD]
assert len({c.id for c in ALL}) == len(ALL), "case ids must be unique"


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    return start_runs(request, tmp_path_factory, ALL, batch_runner(ROLE), batch_of)


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_rejected_before_the_host_changes(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    assert_refused(played, case.names, PREFLIGHT, case.also)
    assert played.ran_outside(PREFLIGHT) == [], f"tasks past the preflight ran\n{played.describe()}"


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_valid_worker_and_options_pass_preflight(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert played.tasks and not played.failed(), details
    assert played.ran_outside(PREFLIGHT) == [], details
    assert played.modules_ran == [] and played.changed_nothing(), details
