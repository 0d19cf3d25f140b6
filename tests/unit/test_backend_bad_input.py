"""Role sse_backend refuses bad input before anything on the host changes.

The harness of test_nginx_bad_input.py (tripwire.py): each case is a tripwired host (its
interpreter records and fails any module run) named after the case, with the case's
variables as host variables, in one `ansible-playbook` run per entry point of the role
(`main`: argument spec, preflight, then the host; `preflight` alone), read back through
the `ansible.posix.json` callback. A bad case passes when the run fails on its host in
`tasks/preflight.yml` or the argument validation, every failure message names the
variable, no task of any kind ran outside those two (controller-side ones included), no
module ran on the host and nothing changed. `test_harness_sees_a_task_past_preflight`
proves the tripwire stops valid input at the role's first host task and the checks see
it. The unpublished release runs on its own, not in check mode: pip on the controller
really looks for it (offline).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tripwire import (
    RC_HOST_FAILED,
    ROOT,
    TRIPWIRE_MARK,
    Case,
    Played,
    assert_refused,
    assert_tripped_at,
    batch_of,
    batch_runner,
    role_playbook,
    run_playbook,
    start_runs,
)

ROLE = "sse_backend"
PREFLIGHT = ("roles/sse_backend/tasks/preflight.yml",)
# the role's first tasks on the host, in order (the tripwire stops the first)
HOST_TASKS = [
    "Read the target's Python, machine and C library",  # the build (not with an index)
    "Look up the service user",
    "Create the service user",
    "Install what a Python virtualenv needs on the target",
]


def role_case(
    case_id: str, variables: dict[str, Any], names: str = "", entry: str = "main", secret: str = ""
) -> Case:
    """A case through the whole role (`main`) unless told."""
    return Case(case_id, variables, names, entry, secret=secret)


BAD = [
    role_case("keep-releases-0", {"sse_backend_keep_releases": 0}, "sse_backend_keep_releases"),
    role_case(
        "keepalive-0", {"sse_backend_keepalive_interval": 0}, "sse_backend_keepalive_interval"
    ),
    role_case(
        "keepalive--1", {"sse_backend_keepalive_interval": -1}, "sse_backend_keepalive_interval"
    ),
    role_case(
        "keepalive-abc", {"sse_backend_keepalive_interval": "abc"}, "sse_backend_keepalive_interval"
    ),
    role_case("jitter--1", {"sse_backend_retry_jitter_ms": -1}, "sse_backend_retry_jitter_ms"),
    role_case(
        "jitter-too-long", {"sse_backend_retry_jitter_ms": 600001}, "sse_backend_retry_jitter_ms"
    ),
    role_case("jitter-2s", {"sse_backend_retry_jitter_ms": "2s"}, "sse_backend_retry_jitter_ms"),
    role_case("bind-no-port", {"sse_backend_bind": "127.0.0.1"}, "sse_backend_bind"),
    role_case("bind-port-70000", {"sse_backend_bind": "127.0.0.1:70000"}, "sse_backend_bind"),
    role_case("bind-port-0", {"sse_backend_bind": ":0"}, "sse_backend_bind"),
    role_case("workers-0", {"sse_backend_workers": 0}, "sse_backend_workers"),
    role_case("source-missing", {"sse_backend_source": "/nonexistent/app"}, "sse_backend_source"),
    role_case("user-space", {"sse_backend_user": "Root User"}, "sse_backend_user"),
    role_case("user-digit-first", {"sse_backend_user": "1abc"}, "sse_backend_user"),
    role_case("app-no-attr", {"sse_backend_app": "sse_app.main"}, "sse_backend_app"),
    role_case("app-empty-attr", {"sse_backend_app": "sse_app.main:"}, "sse_backend_app"),
    role_case("app-empty-module", {"sse_backend_app": ":app"}, "sse_backend_app"),
    role_case("user-root", {"sse_backend_user": "root"}, "sse_backend_user"),
    role_case("name-slash", {"sse_backend_name": "a/b"}, "sse_backend_name"),
    role_case("name-dotdot", {"sse_backend_name": "a..b"}, "sse_backend_name"),
    role_case("version-slash", {"sse_backend_version": "2.0/../../x"}, "sse_backend_version"),
    role_case("version-dotdot", {"sse_backend_version": "2..0"}, "sse_backend_version"),
    role_case("env-as-list", {"sse_backend_env": ["A=1"]}, "sse_backend_env"),
    role_case("env-value-dict", {"sse_backend_env": {"A": {"b": 1}}}, "sse_backend_env.A"),
    role_case("env-value-escape", {"sse_backend_env": {"A": "x\x1b[2J"}}, "sse_backend_env.A"),
    role_case("env-value-cr", {"sse_backend_env": {"A": "x\ry"}}, "sse_backend_env.A"),
]
# A trailing newline once passed every regex check ('$' matches before it): each input
# that becomes a path, a unit line or an environment line is now matched whole, and no
# text input may hold a newline at all.
NEWLINES = [
    role_case(f"{name}-trailing-newline", {f"sse_backend_{name}": value}, f"sse_backend_{name}")
    for name, value in [
        ("version", "2.0.0\n"),
        ("user", "sse\n"),
        ("name", "sse-backend\n"),
        ("bind", "127.0.0.1:8000\n"),
        ("app", "sse_app.main:app\n"),
        ("source", "myapp==2.1\n"),
        ("pip_index_url", "https://pypi.example/simple\n"),
    ]
] + [
    role_case("env-key-trailing-newline", {"sse_backend_env": {"A\n": "1"}}, "sse_backend_env"),
    # a newline in a value once injected a second variable into the service's environment;
    # refused naming the variable, and the value (a secret) is never printed
    role_case(
        "env-value-newline",
        {"sse_backend_env": {"SECRET": "s3cr3t-value\nINJECTED=1"}},
        "sse_backend_env.SECRET",
        secret="s3cr3t-value",
    ),
    role_case(
        "publish-token-newline",
        {"sse_backend_publish_token": "t0ken-value\nINJECTED=1"},
        "sse_backend_publish_token",
        secret="t0ken-value",
    ),
]
# Bad input that once passed preflight and failed only after the host changed; each is
# now rejected in preflight (the reason says why it must be).
GAPS = [
    pytest.param(case)
    for case, why in [
        (
            role_case("bind-hostname", {"sse_backend_bind": "localhost:8000"}, "sse_backend_bind"),
            "systemd's ListenStream= takes numeric addresses only",
        ),
        (
            role_case("bind-star", {"sse_backend_bind": "*:8000"}, "sse_backend_bind"),
            "systemd's ListenStream= refuses '*'",
        ),
        (
            role_case("bind-empty-host", {"sse_backend_bind": ":8000"}, "sse_backend_bind"),
            "systemd's ListenStream= refuses an empty host",
        ),
        (
            role_case(
                "keepalive-inf",
                {"sse_backend_keepalive_interval": "inf"},
                "sse_backend_keepalive_interval",
            ),
            "the app refuses it at worker boot",
        ),
        (
            role_case(
                "index-with-reference",
                {"sse_backend_pip_index_url": "https://pypi.example/simple"},
                "sse_backend_source",
            ),
            "pip on the target would install a package named 'reference'",
        ),
        (
            role_case(
                "index-not-a-url",
                {"sse_backend_pip_index_url": "not a url", "sse_backend_source": "myapp==2.1"},
                "sse_backend_pip_index_url",
            ),
            "pip on the target fails after the venv exists",
        ),
        (
            role_case("env-bad-key", {"sse_backend_env": {"FOO BAR": "1"}}, "sse_backend_env"),
            "systemd ignores the line of the environment file",
        ),
    ]
]
# Issue 15: the lock pip installs with --require-hashes (a hashed one; any file will do for
# the index case, whose install the tripwire stops)
A_LOCK = ROOT / "app/requirements.lock"
LOCKS = [
    role_case(
        "index-without-lock",
        {
            "sse_backend_pip_index_url": "https://pypi.example/simple",
            "sse_backend_source": "myapp==2.1",
        },
        "sse_backend_lock_file",
    ),
    role_case(
        "lock-missing", {"sse_backend_lock_file": "/nonexistent/app.lock"}, "sse_backend_lock_file"
    ),
    # a requirements file of ranges, not a lock: pip would resolve it anew on every run
    role_case(
        "lock-not-hashed",
        {"sse_backend_lock_file": str(ROOT / "app/pyproject.toml")},
        "sse_backend_lock_file",
    ),
    role_case("lock-newline", {"sse_backend_lock_file": f"{A_LOCK}\n"}, "sse_backend_lock_file"),
]
# sse_backend_pip_index_url may carry credentials (issue 15: it was written into a
# world-readable file and shown in a failed task's command line): a refused run and a run
# stopped at the host both keep it out of every output, in any part of the URL.
INDEX_TOKEN = "s3cr3tT0kenABCDEF0123456789"
INDEX_URL = f"https://__token__:{INDEX_TOKEN}@pypi.example/{INDEX_TOKEN}/simple/"
INDEX_SECRETS = [
    role_case(
        "index-token-refused-not-printed",
        {"sse_backend_pip_index_url": INDEX_URL},
        "sse_backend_source",
        secret=INDEX_TOKEN,
    ),
    role_case(
        "index-token-bad-version-not-printed",
        {
            "sse_backend_pip_index_url": INDEX_URL,
            "sse_backend_source": "myapp==2.1",
            "sse_backend_version": "2.1/..",
        },
        "sse_backend_version",
        secret=INDEX_TOKEN,
    ),
]
INDEX_TRIPWIRE = role_case(
    "index-token-tripwire",
    {
        "sse_backend_pip_index_url": INDEX_URL,
        "sse_backend_source": "myapp==2.1",
        "sse_backend_lock_file": str(A_LOCK),
    },
    secret=INDEX_TOKEN,
)
# Valid input, preflight only: proves the harness can pass.
CONTROL = role_case("control-preflight", {}, entry="preflight")
# Issue 17: sse_backend_peers is deprecated and ignored for one release: set (even to what
# its old checks refused, or beside a broker), the preflight warns and passes. The broker
# URL holds a password, never printed.
PEERS_PASSWORD = "peersBrokerPw0123456789"
DEPRECATED_PEERS = [
    role_case("peers-deprecated", {"sse_backend_peers": ["backend2:8000"]}, entry="preflight"),
    role_case(
        "peers-deprecated-old-bad",
        {"sse_backend_peers": ["backend2", "b1:8000,b2:8000", "b3:8000\n"]},
        entry="preflight",
    ),
    role_case(
        "peers-deprecated-with-broker",
        {
            "sse_backend_peers": ["b2:8000"],
            "sse_backend_broker_url": f"redis://:{PEERS_PASSWORD}@10.0.0.5:6379/0",
            "sse_backend_workers": 2,
        },
        entry="preflight",
        secret=PEERS_PASSWORD,
    ),
]
PEERS_WARNING = "DEPRECATED: sse_backend_peers is set"
PEERS_WARNING_TASK = "Warn that sse_backend_peers is deprecated and ignored"
# Valid input, whole role: proves the tripwire stops it and the checks see it.
TRIPWIRE = role_case("control-tripwire", {})
# A release that does not exist: pip on the controller finds no such version (no index
# here, so nothing leaves the machine), for real, not in check mode.
UNPUBLISHED = role_case(
    "version-not-published",
    {"sse_backend_source": "sse-app-never-published==9.9.9", "sse_backend_version": "9.9.9"},
    "sse_backend_source",
)
PIP_OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "UV_OFFLINE": "1"}
CONTROLLER_TASKS = [
    "Build the release on the controller",
    "Build the wheelhouse on the controller",
    "Fail when the release cannot be built",
]


ALL = [
    *BAD,
    *LOCKS,
    *NEWLINES,
    *(param.values[0] for param in GAPS),
    *INDEX_SECRETS,
    *DEPRECATED_PEERS,
    CONTROL,
    TRIPWIRE,
    INDEX_TRIPWIRE,
    UNPUBLISHED,
]
assert len({case.id for case in ALL}) == len(ALL), "case ids must be unique"


def run_cases(cases: list[Case], workdir: Path) -> dict[str, Played]:
    """A batch of one entry point (a host per case, in check mode), or the unpublished
    release alone, for real, with pip offline."""
    if cases != [UNPUBLISHED]:
        return batch_runner(ROLE)(cases, workdir)
    playbook = role_playbook(workdir, ROLE, UNPUBLISHED.entry)
    played = run_playbook(workdir, playbook, UNPUBLISHED.variables, check=False, env=PIP_OFFLINE)
    return {UNPUBLISHED.id: played}


def host_tasks_ran(played: Played) -> list[str]:
    return [task.name for task in played.tasks if any(n in task.name for n in HOST_TASKS)]


def ended_without_failure(played: Played) -> bool:
    """No task failed on the case's host (a batch's exit code is every host's)."""
    stats = list(played.stats.values())
    return not played.failed() and all(s["failures"] == s["unreachable"] == 0 for s in stats)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Callable[[], Played]]:
    def key(case: Case) -> str:
        return case.id if case is UNPUBLISHED else batch_of(case)

    return start_runs(request, tmp_path_factory, ALL, run_cases, key)


@pytest.mark.parametrize(
    "case", [*BAD, *LOCKS, *NEWLINES, *GAPS, *INDEX_SECRETS], ids=lambda case: case.id
)
def test_rejected_before_the_host_changes(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert_refused(played, case.names, PREFLIGHT)
    assert played.ran_outside(PREFLIGHT) == [], f"tasks past the preflight ran\n{details}"
    assert host_tasks_ran(played) == [], details
    if case.secret:
        said = played.stdout + played.stderr
        assert case.secret not in said, f"the secret was printed\n{details}"


@pytest.mark.parametrize("case", [CONTROL], ids=lambda case: case.id)
def test_valid_input_passes_preflight(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert played.tasks and ended_without_failure(played), details
    assert played.ran_outside(PREFLIGHT) == [], details
    assert played.modules_ran == [] and played.changed_nothing(), details


@pytest.mark.parametrize("case", DEPRECATED_PEERS, ids=lambda case: case.id)
def test_deprecated_peers_warn_and_pass(case: Case, runs: dict[str, Callable[[], Played]]) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert played.tasks and ended_without_failure(played), details
    assert played.ran_outside(PREFLIGHT) == [], details
    assert played.modules_ran == [] and played.changed_nothing(), details
    warnings = debug_messages(played, case.id, PEERS_WARNING_TASK)
    assert len(warnings) == 1, details
    said = " ".join(warnings[0].split())
    assert PEERS_WARNING in said and "IGNORED" in said and "sse_backend_broker_url" in said, said
    if case.secret:
        assert case.secret not in played.stdout + played.stderr, details


@pytest.mark.parametrize("case", [CONTROL], ids=lambda case: case.id)
def test_no_deprecation_warning_without_peers(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    statuses = [t.status for t in played.tasks if t.name.endswith(PEERS_WARNING_TASK)]
    assert statuses == ["skipped"], played.describe()
    assert debug_messages(played, case.id, PEERS_WARNING_TASK) == []


def debug_messages(played: Played, host: str, task_name: str) -> list[str]:
    """The messages a debug task printed for one host (read back from the JSON callback)."""
    report = json.loads(played.stdout)
    return [
        str(entry["hosts"][host]["msg"])
        for play in report["plays"]
        for entry in play["tasks"]
        if entry["task"]["name"].endswith(task_name)
        and host in entry["hosts"]
        and "msg" in entry["hosts"][host]
    ]


@pytest.mark.parametrize("case", [TRIPWIRE], ids=lambda case: case.id)
def test_harness_sees_a_task_past_preflight(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert_tripped_at(played, HOST_TASKS[0])
    assert len(played.failed()) == 1, details
    assert any(HOST_TASKS[0] in task for task in played.ran_outside(PREFLIGHT)), details
    assert played.modules_ran == [case.id], details


@pytest.mark.parametrize("case", [INDEX_TRIPWIRE], ids=lambda case: case.id)
def test_index_url_credentials_never_printed(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    assert_tripped_at(played, "Look up the service user")  # no build with an index
    printed = played.stdout + played.stderr
    assert case.secret not in printed, f"the index token was printed\n{played.describe()}"


@pytest.mark.parametrize("case", [UNPUBLISHED], ids=lambda case: case.id)
def test_release_that_does_not_exist_fails_before_the_host_changes(
    case: Case, runs: dict[str, Callable[[], Played]]
) -> None:
    played = runs[case.id]()
    details = played.describe()
    assert played.rc == RC_HOST_FAILED, details
    # past the preflight only the controller's build and its verdict ran
    past = played.ran_outside(PREFLIGHT)
    assert past, details
    for task in past:
        assert any(name in task for name in CONTROLLER_TASKS), f"{task} ran\n{details}"
    messages = played.failures()
    assert len(messages) == 1 and case.names in messages[0], details
    assert "sse-app-never-published==9.9.9" in messages[0], details
    assert "no host was changed" in messages[0], details
    assert played.modules_ran == [], f"a module ran on the host\n{details}"
    assert TRIPWIRE_MARK not in played.stdout, details
    assert host_tasks_ran(played) == [], details
