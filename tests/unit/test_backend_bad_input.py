"""Role sse_backend rejects bad input before anything on the host changes.

Each case runs `ansible-playbook` on a tiny playbook that applies the role to one
inventory host, `sse-target` (connection local, no containers), and reads the run back
through the `ansible.posix.json` stdout callback: which tasks ran, which failed, with
what message. A case passes when the run fails (exit code 2: a task failed), every
failure message names the variable, and no task outside `tasks/preflight.yml` and the
argument-spec validation ran.

Two safety nets keep a role bug from touching this machine: the run is in check mode,
and `sse-target`'s Python interpreter does not exist, so the first module that would
run on the host fails instead ("tripwire"). Controller-side preflight tasks
(`delegate_to: localhost`) still work: the implicit localhost uses the controller's
Python. `test_harness_sees_a_task_past_preflight` proves the tripwire stops the role at
its first host task and that the checks below notice it.

Runs are started in parallel, one `ansible-playbook` per selected case (about 1-3 s
each). The helpers are also used by test_verify_bad_input.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
COLLECTIONS = ROOT / "collections"  # the project's plugins (sse.stack filters)
TARGET = "sse-target"
TRIPWIRE_PYTHON = "/nonexistent/sse-tripwire/bin/python3"
VALIDATION_ACTION = "ansible.builtin.validate_argument_spec"
# exit code of ansible-playbook when a task failed on a host (not a syntax or usage error)
RC_HOST_FAILED = 2


@dataclass(frozen=True)
class Case:
    """One run of a role: variables set as play vars, the entry point, what must happen."""

    id: str
    variables: dict[str, Any]
    names: str = ""  # the variable every failure message must name ("" for a control)
    tasks_from: str = "main"
    check_mode: bool = True  # False only where the controller must really run something
    env: dict[str, str] = field(default_factory=dict)
    secret: str = ""  # text of a secret value that must appear in no output


@dataclass
class Task:
    name: str
    path: str  # "file:line" of the task
    action: str
    status: str  # ok, changed, failed, skipped
    messages: list[str] = field(default_factory=list)  # failure messages


@dataclass
class Played:
    """One ansible-playbook run read back through the JSON callback (run_ansible_json)."""

    rc: int
    tasks: list[Task]
    stats: dict[str, dict[str, int]]
    stdout: str
    stderr: str

    def failures(self) -> list[str]:
        return [message for task in self.tasks for message in task.messages]

    def describe(self) -> str:
        lines = [f"rc={self.rc} stats={self.stats}"]
        lines += [f"  {t.status:8} {t.name}  [{t.path}] {t.messages or ''}" for t in self.tasks]
        if self.stderr.strip():
            lines.append("stderr: " + self.stderr.strip()[-2000:])
        return "\n".join(lines)


@dataclass
class Run(Played):
    case: Case

    def past_preflight(self, role: str) -> list[str]:
        """Tasks that ran although they are neither validation nor the role's preflight."""
        preflight = str(ROLES / role / "tasks" / "preflight.yml") + ":"
        return [
            f"{task.name} ({task.path})"
            for task in self.tasks
            if task.action != VALIDATION_ACTION and not task.path.startswith(preflight)
        ]


def _failure_messages(result: dict[str, Any]) -> list[str]:
    if not result.get("failed"):
        return []
    items = result.get("results")
    if isinstance(items, list):  # a loop: the items that failed (passing items name others)
        return [str(item.get("msg", "")) for item in items if item.get("failed")]
    return [str(result.get("msg", ""))] + [str(e) for e in result.get("argument_errors", [])]


def _status(result: dict[str, Any]) -> str:
    if result.get("failed") or result.get("unreachable"):
        return "failed"
    if result.get("skipped"):
        return "skipped"
    return "changed" if result.get("changed") else "ok"


def _ansible_playbook() -> str:
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    assert found, "ansible-playbook not found (run inside .venv)"
    return found


def run_role(role: str, case: Case, workdir: Path) -> Run:
    """Apply `role` with the case's variables to the tripwired local host, in check mode."""
    workdir.mkdir(parents=True, exist_ok=True)
    play = {
        "name": f"{role} {case.id}",
        "hosts": TARGET,
        "gather_facts": False,
        "vars": case.variables,
        "tasks": [
            {
                "name": f"Apply {role}",
                "ansible.builtin.import_role": {"name": role, "tasks_from": case.tasks_from},
            }
        ],
    }
    playbook = workdir / "play.yml"
    playbook.write_text(json.dumps([play], indent=2))  # JSON is YAML
    inventory = workdir / "inventory.ini"
    inventory.write_text(
        f"{TARGET} ansible_connection=local ansible_python_interpreter={TRIPWIRE_PYTHON}\n"
    )
    check = ["--check"] if case.check_mode else []
    played = run_ansible_json(
        workdir, [*check, "-i", str(inventory), "-c", "local", str(playbook)], case.env
    )
    return Run(case=case, **vars(played))


def run_ansible_json(
    workdir: Path, args: list[str], extra_env: dict[str, str] | None = None
) -> Played:
    """ansible-playbook ARGS in WORKDIR with no ansible.cfg of the repo or the user and the
    JSON callback: the exit code, every task result, the stats, stdout and stderr."""
    config = workdir / "ansible.cfg"  # empty: neither the repo's nor the user's settings
    config.write_text("")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_JSON_INDENT": "0",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp-local"),
        "ANSIBLE_REMOTE_TMP": str(workdir / "tmp-remote"),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [_ansible_playbook(), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON from ansible-playbook (rc={proc.returncode}):\n{proc.stderr}")
    tasks = [
        Task(
            name=entry["task"]["name"],
            path=entry["task"]["path"],
            action=result.get("action", ""),
            status=_status(result),
            messages=_failure_messages(result),
        )
        for play_report in report["plays"]
        for entry in play_report["tasks"]
        for result in entry["hosts"].values()
    ]
    return Played(proc.returncode, tasks, report["stats"], proc.stdout, proc.stderr)


def start_runs(
    role: str, cases: list[Case], request: pytest.FixtureRequest, tmp: pytest.TempPathFactory
) -> dict[str, Future[Run]]:
    """Start, in parallel, the runs of the cases whose tests were selected."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and hasattr(item, "callspec")
        and isinstance(item.callspec.params.get("case"), Case)
    }
    pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 2)
    request.addfinalizer(lambda: pool.shutdown(wait=True))
    return {
        case.id: pool.submit(run_role, role, case, tmp.mktemp(re.sub(r"\W+", "_", case.id)))
        for case in cases
        if case.id in selected
    }


def assert_rejected_in_preflight(run: Run, role: str, never_ran: list[str]) -> None:
    """The run failed in a task of its own, naming the variable, before the host changed."""
    details = run.describe()
    assert run.rc == RC_HOST_FAILED, f"expected a failed task (rc 2)\n{details}"
    failures = run.failures()
    assert failures, f"no failure message\n{details}"
    for message in failures:
        assert run.case.names in message, f"{message!r} does not name {run.case.names}\n{details}"
    assert run.past_preflight(role) == [], f"tasks past the preflight ran\n{details}"
    for name in never_ran:
        assert name not in run.stdout, f"{name!r} ran\n{details}"
    if run.case.secret:
        assert run.case.secret not in run.stdout + run.stderr, f"the secret was printed\n{details}"
    assert all(host["changed"] == 0 for host in run.stats.values()), details


def assert_control_passes(run: Run, role: str) -> None:
    details = run.describe()
    assert run.rc == 0, details
    assert run.failures() == [], details
    assert run.tasks, details
    assert run.past_preflight(role) == [], details


def assert_stopped_by_tripwire(run: Run, role: str, first_host_task: str) -> None:
    """Valid input: preflight passes, the first host task fails on the missing interpreter."""
    details = run.describe()
    assert run.rc == RC_HOST_FAILED, details
    past = run.past_preflight(role)
    assert any(first_host_task in task for task in past), details
    failed = [task for task in run.tasks if task.status == "failed"]
    assert len(failed) == 1, details
    assert first_host_task in failed[0].name, details
    assert TRIPWIRE_PYTHON in " ".join(failed[0].messages), details
    assert all(host["changed"] == 0 for host in run.stats.values()), details


# ---------------------------------------------------------------------------------------

ROLE = "sse_backend"
# the role's first tasks on the host, in order (the tripwire stops the first)
HOST_TASKS = [
    "Look up the service user",
    "Create the service user",
    "Install what a Python virtualenv needs on the target",
]

BAD = [
    Case("peers-no-port", {"sse_backend_peers": ["backend2"]}, "sse_backend_peers"),
    Case("peers-joined", {"sse_backend_peers": ["b1:8000,b2:8000"]}, "sse_backend_peers"),
    Case("keep-releases-0", {"sse_backend_keep_releases": 0}, "sse_backend_keep_releases"),
    Case("keepalive-0", {"sse_backend_keepalive_interval": 0}, "sse_backend_keepalive_interval"),
    Case("keepalive--1", {"sse_backend_keepalive_interval": -1}, "sse_backend_keepalive_interval"),
    Case(
        "keepalive-abc", {"sse_backend_keepalive_interval": "abc"}, "sse_backend_keepalive_interval"
    ),
    Case("bind-no-port", {"sse_backend_bind": "127.0.0.1"}, "sse_backend_bind"),
    Case("bind-port-70000", {"sse_backend_bind": "127.0.0.1:70000"}, "sse_backend_bind"),
    Case("bind-port-0", {"sse_backend_bind": ":0"}, "sse_backend_bind"),
    Case("workers-0", {"sse_backend_workers": 0}, "sse_backend_workers"),
    Case("source-missing", {"sse_backend_source": "/nonexistent/app"}, "sse_backend_source"),
    Case("user-space", {"sse_backend_user": "Root User"}, "sse_backend_user"),
    Case("user-digit-first", {"sse_backend_user": "1abc"}, "sse_backend_user"),
    Case("app-no-attr", {"sse_backend_app": "sse_app.main"}, "sse_backend_app"),
    Case("app-empty-attr", {"sse_backend_app": "sse_app.main:"}, "sse_backend_app"),
    Case("app-empty-module", {"sse_backend_app": ":app"}, "sse_backend_app"),
    Case("user-root", {"sse_backend_user": "root"}, "sse_backend_user"),
    Case("name-slash", {"sse_backend_name": "a/b"}, "sse_backend_name"),
    Case("name-dotdot", {"sse_backend_name": "a..b"}, "sse_backend_name"),
    Case("version-slash", {"sse_backend_version": "2.0/../../x"}, "sse_backend_version"),
    Case("version-dotdot", {"sse_backend_version": "2..0"}, "sse_backend_version"),
    Case("env-as-list", {"sse_backend_env": ["A=1"]}, "sse_backend_env"),
    Case("env-value-dict", {"sse_backend_env": {"A": {"b": 1}}}, "sse_backend_env.A"),
    Case("env-value-escape", {"sse_backend_env": {"A": "x\x1b[2J"}}, "sse_backend_env.A"),
    Case("env-value-cr", {"sse_backend_env": {"A": "x\ry"}}, "sse_backend_env.A"),
]
# A trailing newline once passed every regex check ('$' matches before it): each input
# that becomes a path, a unit line or an environment line is now matched whole, and no
# text input may hold a newline at all.
NEWLINES = [
    Case(f"{name}-trailing-newline", {f"sse_backend_{name}": value}, f"sse_backend_{name}")
    for name, value in [
        ("version", "2.0.0\n"),
        ("user", "sse\n"),
        ("name", "sse-backend\n"),
        ("bind", "127.0.0.1:8000\n"),
        ("app", "sse_app.main:app\n"),
        ("source", "myapp==2.1\n"),
        ("pip_index_url", "https://pypi.example/simple\n"),
        ("peers", ["backend2:8000\n"]),
    ]
] + [
    Case("env-key-trailing-newline", {"sse_backend_env": {"A\n": "1"}}, "sse_backend_env"),
    # a newline in a value once injected a second variable into the service's environment;
    # refused naming the variable, and the value (a secret) is never printed
    Case(
        "env-value-newline",
        {"sse_backend_env": {"SECRET": "s3cr3t-value\nINJECTED=1"}},
        "sse_backend_env.SECRET",
        secret="s3cr3t-value",
    ),
    Case(
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
            Case("bind-hostname", {"sse_backend_bind": "localhost:8000"}, "sse_backend_bind"),
            "systemd's ListenStream= takes numeric addresses only",
        ),
        (
            Case("bind-star", {"sse_backend_bind": "*:8000"}, "sse_backend_bind"),
            "systemd's ListenStream= refuses '*'",
        ),
        (
            Case("bind-empty-host", {"sse_backend_bind": ":8000"}, "sse_backend_bind"),
            "systemd's ListenStream= refuses an empty host",
        ),
        (
            Case(
                "keepalive-inf",
                {"sse_backend_keepalive_interval": "inf"},
                "sse_backend_keepalive_interval",
            ),
            "the app refuses it at worker boot",
        ),
        (
            Case(
                "index-with-reference",
                {"sse_backend_pip_index_url": "https://pypi.example/simple"},
                "sse_backend_source",
            ),
            "pip on the target would install a package named 'reference'",
        ),
        (
            Case(
                "index-not-a-url",
                {"sse_backend_pip_index_url": "not a url", "sse_backend_source": "myapp==2.1"},
                "sse_backend_pip_index_url",
            ),
            "pip on the target fails after the venv exists",
        ),
        (
            Case("env-bad-key", {"sse_backend_env": {"FOO BAR": "1"}}, "sse_backend_env"),
            "systemd ignores the line of the environment file",
        ),
    ]
]
# sse_backend_pip_index_url may carry credentials (issue 15: it was written into a
# world-readable file and shown in a failed task's command line): a refused run and a run
# stopped at the host both keep it out of every output, in any part of the URL.
INDEX_TOKEN = "s3cr3tT0kenABCDEF0123456789"
INDEX_URL = f"https://__token__:{INDEX_TOKEN}@pypi.example/{INDEX_TOKEN}/simple/"
INDEX_SECRETS = [
    Case(
        "index-token-refused-not-printed",
        {"sse_backend_pip_index_url": INDEX_URL},
        "sse_backend_source",
        secret=INDEX_TOKEN,
    ),
    Case(
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
INDEX_TRIPWIRE = Case(
    "index-token-tripwire",
    {"sse_backend_pip_index_url": INDEX_URL, "sse_backend_source": "myapp==2.1"},
    secret=INDEX_TOKEN,
)
# Valid input, preflight only: proves the harness can pass.
CONTROL = Case("control-preflight", {}, tasks_from="preflight")
# Valid input, whole role: proves the tripwire stops it and the checks see it.
TRIPWIRE = Case("control-tripwire", {})
# A release that does not exist: pip on the controller finds no such version (no index
# here, so nothing leaves the machine), for real, not in check mode.
UNPUBLISHED = Case(
    "version-not-published",
    {"sse_backend_source": "sse-app-never-published==9.9.9", "sse_backend_version": "9.9.9"},
    "sse_backend_source",
    check_mode=False,
    env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""},
)
CONTROLLER_TASKS = [
    "Build the release on the controller",
    "Build the wheelhouse on the controller",
    "Fail when the release cannot be built",
]


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[Run]]:
    gaps = [param.values[0] for param in GAPS]
    cases = [*BAD, *NEWLINES, *gaps, *INDEX_SECRETS, CONTROL, TRIPWIRE, INDEX_TRIPWIRE, UNPUBLISHED]
    return start_runs(ROLE, cases, request, tmp_path_factory)


@pytest.mark.parametrize("case", [*BAD, *NEWLINES, *GAPS, *INDEX_SECRETS], ids=lambda case: case.id)
def test_rejected_before_the_host_changes(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_rejected_in_preflight(runs[case.id].result(), ROLE, HOST_TASKS)


@pytest.mark.parametrize("case", [CONTROL], ids=lambda case: case.id)
def test_valid_input_passes_preflight(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_control_passes(runs[case.id].result(), ROLE)


@pytest.mark.parametrize("case", [TRIPWIRE], ids=lambda case: case.id)
def test_harness_sees_a_task_past_preflight(case: Case, runs: dict[str, Future[Run]]) -> None:
    assert_stopped_by_tripwire(runs[case.id].result(), ROLE, HOST_TASKS[0])


@pytest.mark.parametrize("case", [INDEX_TRIPWIRE], ids=lambda case: case.id)
def test_index_url_credentials_never_printed(case: Case, runs: dict[str, Future[Run]]) -> None:
    run = runs[case.id].result()
    assert_stopped_by_tripwire(run, ROLE, HOST_TASKS[0])
    printed = run.stdout + run.stderr
    assert case.secret not in printed, f"the index token was printed\n{run.describe()}"


@pytest.mark.parametrize("case", [UNPUBLISHED], ids=lambda case: case.id)
def test_release_that_does_not_exist_fails_before_the_host_changes(
    case: Case, runs: dict[str, Future[Run]]
) -> None:
    run = runs[case.id].result()
    details = run.describe()
    assert run.rc == RC_HOST_FAILED, details
    # past the preflight only the controller's build and its verdict ran
    past = run.past_preflight(ROLE)
    assert past, details
    for task in past:
        assert any(name in task for name in CONTROLLER_TASKS), f"{task} ran\n{details}"
    messages = run.failures()
    assert len(messages) == 1 and "sse_backend_source" in messages[0], details
    assert "sse-app-never-published==9.9.9" in messages[0], details
    assert "no host was changed" in messages[0], details
    assert TRIPWIRE_PYTHON not in run.stdout, f"a module ran on the host\n{details}"
    for name in HOST_TASKS:
        assert name not in run.stdout, f"{name!r} ran\n{details}"
