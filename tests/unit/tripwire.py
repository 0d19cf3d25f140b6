"""Run ansible-playbook against tripwired hosts and read the run back.

A tripwired host is reached with `ansible_connection=local`, and its Python interpreter
is a small script that records the run (the host's name, one line in `tripwire.log` of
the run's folder) and fails with "sse-tripwire" on stderr. So the first module that
would run on the host (apt, stat, command, ... even in check mode) is recorded and
stopped; controller-side tasks (assert, set_fact, fail, include_role, the argument
validation, lookups, and anything delegated to the implicit localhost, which keeps the
controller's Python) run as usual. Runs are in check mode as a second safety net.

`run_playbook` runs any playbook (site.yml, ...) on tripwired hosts with extra vars
(`-e @vars.json`, as a user would); `run_role` one role entry point on one host. Both
return a `Played`: exit code, every task result (through the `ansible.posix.json`
callback), the stats and the hosts a module ran on (`modules_ran`: empty means no module
ran on a managed host). `run_batch` runs many cases in one ansible-playbook start-up: a
host per case, named after it, with the case's variables as host variables, and splits the
result per host. `Case`, `batch_runner` and `start_runs` run a test module's cases (an
entry point of a role or site.yml) in parallel threads, only those selected (any case type
with an `id`, batched by `key`); `assert_case` is the verdict: a bad case is refused in the
role's preflight naming the variable with no module run, a valid one passes every check.

Used by the test_*_bad_input.py files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
COLLECTIONS = ROOT / "collections"
TARGET = "sse-target"
# What the tripwire interpreter writes to stderr (and so to a tripped task's message).
TRIPWIRE_MARK = "sse-tripwire"
VALIDATION_ACTION = "ansible.builtin.validate_argument_spec"
# exit code of ansible-playbook when a task failed on a host (not a syntax or usage error)
RC_HOST_FAILED = 2
# where site.yml's first play reaches each role's preflight from
SITE_FIRST_PLAY = ("roles/sse_release/tasks/preflight.yml", "playbooks/backend.yml")
# one host in both groups of the project's playbooks
ONE_HOST: dict[str, dict[str, Any]] = {
    TARGET: {"groups": ["sse_backends", "sse_proxies"], "vars": {}}
}

_INTERPRETER = """\
#!/bin/sh
# {mark}: a module was about to run on {host}; record it and refuse
cat >/dev/null
printf '%s\\n' '{host}' >> '{log}'
echo '{mark}: a module ran on {host}' >&2
exit 97
"""


@dataclass
class Task:
    host: str
    name: str
    path: str  # "file:line" of the task
    action: str
    status: str  # ok, changed, failed, skipped
    messages: list[str] = field(default_factory=list)  # failure messages


@dataclass
class Played:
    """One ansible-playbook run read back through the JSON callback."""

    rc: int
    tasks: list[Task]
    stats: dict[str, dict[str, int]]
    stdout: str
    stderr: str
    modules_ran: list[str]  # the tripwired hosts a module ran on, in order

    def failures(self) -> list[str]:
        return [message for task in self.tasks for message in task.messages]

    def failed(self) -> list[Task]:
        return [task for task in self.tasks if task.status == "failed"]

    def ran_outside(self, where: tuple[str, ...]) -> list[str]:
        """Tasks (any status) that ran outside the files `where` (paths relative to ROOT)
        and the argument validation: controller-side ones too, which the tripwire misses."""
        return [
            f"{task.name} ({task.path})"
            for task in self.tasks
            if task.action != VALIDATION_ACTION
            and not any(task.path.startswith(str(ROOT / path)) for path in where)
        ]

    def changed_nothing(self) -> bool:
        return all(host.get("changed", 0) == 0 for host in self.stats.values())

    def for_host(self, host: str) -> Played:
        """The part of the run on one host (a batch runs one case per host)."""
        return Played(
            rc=self.rc,
            tasks=[task for task in self.tasks if task.host == host],
            stats={host: self.stats.get(host, {})},
            stdout=self.stdout,
            stderr=self.stderr,
            modules_ran=[name for name in self.modules_ran if name == host],
        )

    def describe(self) -> str:
        lines = [f"rc={self.rc} modules_ran={self.modules_ran} stats={self.stats}"]
        lines += [f"  {t.status:8} {t.name}  [{t.path}] {t.messages or ''}" for t in self.tasks]
        if self.stderr.strip():
            lines.append("stderr: " + self.stderr.strip()[-2000:])
        return "\n".join(lines)


def tripwire_inventory(workdir: Path, hosts: Mapping[str, Mapping[str, Any]]) -> Path:
    """An inventory of `hosts` (name -> {"groups": [...], "vars": {...}}), each tripwired;
    a host without groups is listed in group all only (to tripwire the hosts of another
    inventory given before this one: its groups and variables stay, the connection is
    this one's).

    The tripwire is set per host, not in group all: the implicit localhost takes group
    all's variables and must keep a working Python (and no become: the project's plays
    become root, and this machine may have no sudo)."""
    log = workdir / "tripwire.log"
    log.touch()
    groups: dict[str, dict[str, Any]] = {}
    ungrouped: dict[str, Any] = {}
    for name, host in hosts.items():
        interpreter = workdir / "tripwire" / name / "python3"
        interpreter.parent.mkdir(parents=True, exist_ok=True)
        interpreter.write_text(_INTERPRETER.format(mark=TRIPWIRE_MARK, host=name, log=log))
        interpreter.chmod(0o755)
        connection = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(interpreter),
            "ansible_become": False,
        }
        entry = {**connection, **host.get("vars", {})}
        for group in host.get("groups", []):
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = entry
        if not host.get("groups"):
            ungrouped[name] = entry
    inventory = workdir / "inventory.json"  # JSON is YAML
    inventory.write_text(json.dumps({"all": {"hosts": ungrouped, "children": groups}}))
    return inventory


def hosts_of(inventory: Path) -> dict[str, dict[str, Any]]:
    """The hosts of a real inventory, without groups: `run_playbook(..., inventory=...)`
    tripwires them on top of it."""
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: {} for name in json.loads(listed.stdout)["_meta"]["hostvars"]}


def role_playbook(workdir: Path, role: str, tasks_from: str = "main") -> Path:
    """A playbook that applies one entry point of `role` to every host, without facts."""
    play = {
        "name": f"Apply {role} ({tasks_from})",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {
                "name": f"Apply {role}",
                "ansible.builtin.import_role": {"name": role, "tasks_from": tasks_from},
            }
        ],
    }
    playbook = workdir / "play.yml"
    playbook.write_text(json.dumps([play], indent=2))  # JSON is YAML
    return playbook


def run_role(
    workdir: Path, role: str, extra_vars: Mapping[str, Any], tasks_from: str = "main"
) -> Played:
    """`role`'s entry point `tasks_from` on one tripwired host with these extra vars."""
    workdir.mkdir(parents=True, exist_ok=True)
    return run_playbook(workdir, role_playbook(workdir, role, tasks_from), extra_vars)


def run_playbook(
    workdir: Path,
    playbook: Path,
    extra_vars: Mapping[str, Any],
    hosts: Mapping[str, Mapping[str, Any]] = ONE_HOST,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    inventory: Path | None = None,
) -> Played:
    """`playbook` (in check mode unless told) on tripwired `hosts`, with these extra vars;
    with `inventory`, on that inventory's hosts, each tripwired (`hosts` is ignored)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sources = ["-i", str(inventory)] if inventory else []
    tripwired = tripwire_inventory(workdir, hosts_of(inventory) if inventory else hosts)
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(extra_vars))
    args = [*(["--check"] if check else []), *sources, "-i", str(tripwired), str(playbook)]
    played = run_ansible_json(workdir, [*args, "-e", f"@{extra}"], env)
    log = (workdir / "tripwire.log").read_text().split()
    return Played(**{**vars(played), "modules_ran": log})


def run_ansible_json(
    workdir: Path, args: list[str], extra_env: Mapping[str, str] | None = None
) -> Played:
    """ansible-playbook ARGS in WORKDIR with no ansible.cfg of the repo or the user (only
    the project's roles and collection) and the JSON callback."""
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
            host=host,
            name=entry["task"]["name"],
            path=entry["task"]["path"],
            action=result.get("action", ""),
            status=_status(result),
            messages=_failure_messages(result),
        )
        for play_report in report["plays"]
        for entry in play_report["tasks"]
        for host, result in entry["hosts"].items()
    ]
    return Played(proc.returncode, tasks, report["stats"], proc.stdout, proc.stderr, [])


def _failure_messages(result: dict[str, Any]) -> list[str]:
    if not result.get("failed"):
        return []
    items = result.get("results")
    if isinstance(items, list):  # a loop: the items that failed (passing items name others)
        return [_message(item) for item in items if item.get("failed")]
    return [_message(result)] + [str(e) for e in result.get("argument_errors", [])]


def _message(result: dict[str, Any]) -> str:
    # a tripped module says why on stderr only
    return " ".join(str(result.get(key, "")) for key in ("msg", "module_stderr")).strip()


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


@dataclass(frozen=True)
class Case:
    """One run of a role's entry point (or of site.yml) with some variables."""

    id: str
    variables: dict[str, Any]
    names: str = ""  # the variable every failure message names ("" for a valid case)
    entry: str = "preflight"  # an entry point of the role (tasks_from), or "site"
    also: tuple[str, ...] = ()  # more text some failure message holds
    secret: str = ""  # text of a secret value that must appear in no output


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


CaseT = TypeVar("CaseT", bound=_Identified)


def batch_of(case: Case) -> str:
    """Cases of one entry point share a run; through site.yml each has its own (its first
    play stops every host at the first failure)."""
    return case.id if case.entry == "site" else case.entry


def batch_runner(role: str) -> Callable[[list[Case], Path], dict[str, Played]]:
    """Runs a batch of `batch_of`: site.yml for one case, or one entry point of `role`
    with a host per case."""

    def run(cases: list[Case], workdir: Path) -> dict[str, Played]:
        if cases[0].entry == "site":
            (case,) = cases
            return {case.id: run_playbook(workdir, ROOT / "site.yml", case.variables)}
        playbook = role_playbook(workdir, role, cases[0].entry)
        return run_batch(workdir, playbook, {case.id: case.variables for case in cases})

    return run


def run_batch(
    workdir: Path,
    playbook: Path,
    cases: Mapping[str, Mapping[str, Any]],
    groups: tuple[str, ...] = ("sse_backends", "sse_proxies"),
) -> dict[str, Played]:
    """One run of `playbook` for many cases at once: each case is a tripwired host named
    after it, with its variables as host variables (one ansible-playbook start-up instead
    of one per case). Only for plays where one host's failure does not stop the others."""
    hosts = {name: {"groups": list(groups), "vars": dict(values)} for name, values in cases.items()}
    played = run_playbook(workdir, playbook, {}, hosts, env={"ANSIBLE_FORKS": "25"})
    return {name: played.for_host(name) for name in cases}


def start_runs(
    request: pytest.FixtureRequest,
    tmp: pytest.TempPathFactory,
    cases: list[CaseT],
    run: Callable[[list[CaseT], Path], dict[str, Played]],
    key: Callable[[CaseT], str] | None = None,
) -> dict[str, Callable[[], Played]]:
    """Start, in parallel threads, `run(cases, folder)` for each batch (cases of the same
    `key(case)`, `batch_of` for a `Case` by default) of the cases whose tests were selected
    (a test takes its case as the parameter `case`). Returns, per case id, a call that
    waits for its result."""
    batch_key: Callable[[Any], str] = key or batch_of
    selected = {
        getattr(item.callspec.params.get("case"), "id", None)
        for item in request.session.items
        if getattr(item, "module", None) is request.module and hasattr(item, "callspec")
    }
    batches: dict[str, list[CaseT]] = {}
    for case in cases:
        if case.id in selected:
            batches.setdefault(batch_key(case), []).append(case)
    pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 2)
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    results: dict[str, Callable[[], Played]] = {}
    for name, batch in batches.items():
        future = pool.submit(run, batch, tmp.mktemp(re.sub(r"\W+", "_", name)))
        for case in batch:
            results[case.id] = _waiter(future, case.id)
    return results


def _waiter(future: Future[dict[str, Played]], case_id: str) -> Callable[[], Played]:
    return lambda: future.result()[case_id]


def assert_refused(
    played: Played, names: str, where: tuple[str, ...], also: tuple[str, ...] = ()
) -> None:
    """The run failed only in tasks of the files `where` (paths relative to ROOT) or the
    argument validation, every failure message naming `names`, some holding each text of
    `also`; and no module ran on a managed host."""
    details = played.describe()
    assert played.rc == RC_HOST_FAILED, f"expected a failed task (rc 2)\n{details}"
    failed = played.failed()
    assert failed, f"no task failed\n{details}"
    for task in failed:
        inside = any(task.path.startswith(str(ROOT / path)) for path in where)
        assert inside or task.action == VALIDATION_ACTION, f"{task.name} failed\n{details}"
        assert task.messages, f"{task.name} failed without a message\n{details}"
        for message in task.messages:
            assert names in message, f"{message!r} does not name {names}\n{details}"
            assert "Traceback" not in message, details
    said = " ".join(" ".join(played.failures()).split())
    for text in also:
        assert text in said, f"{text!r} is in no failure message\n{details}"
    assert played.modules_ran == [], f"a module ran on a managed host\n{details}"
    assert played.changed_nothing(), details


def assert_tripped_at(played: Played, first_host_task: str) -> None:
    """Valid input: every check passed, and the first task that runs a module on the host
    is the one that tripped (so the checks before it ran on the controller only)."""
    details = played.describe()
    assert played.rc == RC_HOST_FAILED, details
    failed = played.failed()
    assert failed, details
    assert all(first_host_task in task.name for task in failed), details
    assert all(TRIPWIRE_MARK in " ".join(task.messages) for task in failed), details
    assert played.modules_ran, details
    assert played.changed_nothing(), details


def assert_case(
    played: Played, case: Case, preflight: tuple[str, ...], first_host_tasks: Mapping[str, str]
) -> None:
    """A bad case (it names a variable) is refused in `preflight` (files relative to ROOT;
    through site.yml, reached from its first play); a valid one passes every check, and
    then trips at the entry point's first host task, or, where it has none listed (the
    preflight alone), ends without a failure."""
    if case.secret:
        said = played.stdout + played.stderr
        assert case.secret not in said, f"the secret was printed\n{played.describe()}"
    if case.names:
        where = (*preflight, *SITE_FIRST_PLAY) if case.entry == "site" else preflight
        assert_refused(played, case.names, where, case.also)
    elif case.entry in first_host_tasks:
        assert_tripped_at(played, first_host_tasks[case.entry])
    else:
        assert played.rc in (0, RC_HOST_FAILED), played.describe()
        assert not played.failed() and not played.modules_ran, played.describe()
