"""The backend's systemd unit and the findings about it, for the SSE diagnosis (stdlib only).

``discover_units`` finds the unit in the system manager and in every lingering user's
manager (a name, or any service whose ExecStart runs an ASGI/WSGI server);
``analyze_unit`` then checks, one small function per finding id: is it active (quoting the
app's own error when it is not); did the processes that run the app start after its code
was last written (else they run stale code); which Gunicorn worker class and --timeout it
runs with (a sync worker is killed --timeout seconds into a stream); what its journal says.

Everything that runs a command takes ``run(argv) -> (rc, stdout, stderr)``; nothing here
writes anything. No Ansible imports: shipped as the collection module_utils
``sse_diagnose_backend_units``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_backend import (
    PROPERTIES,
    SERVER_RE,
    ProcessTable,
    Read,
    Run,
    _iso,
    code_written,
    env_files,
    exec_argv,
    exec_start_where,
    journal_errors,
    parse_show,
    server_settings,
    unit_env,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_verdict import finding

__all__ = ["analyze_unit", "discover_units", "systemctl", "user_managers"]

LINGER_DIR = "/var/lib/systemd/linger"


# --------------------------------------------------------------------------------------------
# Finding the unit
# --------------------------------------------------------------------------------------------


def user_managers(linger_dir: str = LINGER_DIR, run_dir: str = "/run/user") -> list[dict[str, Any]]:
    """Users whose systemd manager may run the backend: lingering ones and running ones."""
    names: set[str] = set()
    with contextlib.suppress(OSError):
        names.update(os.listdir(linger_dir))
    uids: set[int] = set()
    with contextlib.suppress(OSError):
        uids.update(int(e) for e in os.listdir(run_dir) if e.isdigit() and e != "0")
    users = {}
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        users[entry.pw_uid] = {"user": name, "uid": entry.pw_uid, "lingering": True}
    for uid in uids - set(users):
        try:
            users[uid] = {"user": pwd.getpwuid(uid).pw_name, "uid": uid, "lingering": False}
        except KeyError:
            continue
    for info in users.values():
        info["bus"] = os.path.exists(os.path.join(run_dir, str(info["uid"]), "bus"))
    return sorted(users.values(), key=lambda u: u["uid"])


def systemctl(scope: dict[str, Any]) -> list[str]:
    if scope["scope"] == "system":
        return ["systemctl", "--no-pager"]
    return [
        "runuser",
        "-u",
        scope["user"],
        "--",
        "env",
        f"XDG_RUNTIME_DIR=/run/user/{scope['uid']}",
        "systemctl",
        "--user",
        "--no-pager",
    ]


def _names(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0].endswith(".service") and "@." not in words[0]:
            out.append(words[0])
    return out


def _scopes(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"scope": "system"}] + [
        {"scope": "user", **{k: u[k] for k in ("user", "uid", "lingering", "bus")}} for u in users
    ]


def _server_units(run: Run, base: list[str], label: str) -> tuple[list[str], dict[str, Any] | None]:
    """The services of one manager whose ExecStart runs an ASGI/WSGI server."""
    rc1, files, _ = run([*base, "list-unit-files", "--type=service", "--no-legend", "--plain"])
    rc2, loaded, _ = run([*base, "list-units", "--type=service", "--all", "--no-legend", "--plain"])
    if rc1 != 0 and rc2 != 0:
        why = f"cannot list the units of {label}: {(files or loaded).strip()[:200]}"
        return [], finding("backend.systemctl", "warning", why)
    candidates = sorted(set(_names(files)) | set(_names(loaded)))
    if not candidates:
        return [], None
    _, out, _ = run([*base, "show", "-p", "Id", "-p", "ExecStart", "--", *candidates])
    return [
        u["Id"]
        for u in parse_show(out)
        if u.get("Id") and SERVER_RE.search(" ".join(exec_argv(u.get("ExecStart", ""))))
    ], None


def _no_bus(scope: dict[str, Any], label: str) -> dict[str, Any]:
    return finding(
        "backend.user_manager",
        "info" if not scope.get("lingering") else "warning",
        f"the systemd manager of {label} is not running"
        f" (no /run/user/{scope['uid']}/bus): its user units were not checked",
    )


def discover_units(
    run: Run, unit: str = "", users: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Backend units in the system manager and each user manager; and findings on the way.

    ``unit``: a unit name to look for; empty: every service whose ExecStart runs an
    ASGI/WSGI server (gunicorn, uvicorn, hypercorn, daphne, granian).
    """
    found, findings = [], []
    name = unit if not unit or "." in unit else unit + ".service"
    for scope in _scopes(users if users is not None else user_managers()):
        label = "system" if scope["scope"] == "system" else f"user {scope['user']}"
        if scope["scope"] == "user" and not scope["bus"]:
            findings.append(_no_bus(scope, label))
            continue
        base = systemctl(scope)
        candidates, problem = ([name], None) if name else _server_units(run, base, label)
        findings += [problem] if problem else []
        if not candidates:
            continue
        props = [a for p in PROPERTIES for a in ("-p", p)]
        rc, out, err = run([*base, "show", *props, "--", *candidates])
        if rc != 0:
            why = f"systemctl show in {label} failed: {(err or out).strip()[:200]}"
            findings.append(finding("backend.systemctl", "warning", why))
            continue
        for shown in parse_show(out):
            if shown.get("LoadState") not in ("not-found", "") and shown.get("Id"):
                found.append({"scope": scope, "label": label, "props": shown})
    return found, findings


def _socket_state(run: Run, scope: dict[str, Any], sockets: list[str]) -> list[dict[str, Any]]:
    if not sockets:
        return []
    rc, out, _ = run(
        [*systemctl(scope), "show", "-p", "Id", "-p", "ActiveState", "-p", "Listen", "--", *sockets]
    )
    if rc != 0:
        return []
    return [
        {
            "unit": s.get("Id"),
            "active": s.get("ActiveState"),
            "listen": [
                x.split(" (")[0]
                for x in s.get("Listen", "").split(" ")
                if x and not x.startswith("(")
            ],
        }
        for s in parse_show(out)
    ]


# --------------------------------------------------------------------------------------------
# One unit
# --------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """What analyze_unit observed of one unit, for the checks."""

    name: str  # "sse-backend.service (user sse)"
    props: dict[str, str]
    where: str  # file:line of ExecStart=
    state: dict[str, Any]
    main: dict[str, Any] | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] | None = None
    journal: dict[str, Any] = field(default_factory=dict)


def _argv(main: dict[str, Any] | None, props: dict[str, str]) -> list[str]:
    argv = main["cmdline"] if main else exec_argv(props.get("ExecStart", ""))
    # the python interpreter in front of the script: look at the script
    python = bool(argv) and re.search(r"/python[0-9.]*$", argv[0]) is not None
    return argv[1:] if python and len(argv) > 1 and not argv[1].startswith("-") else argv


def _observe(run: Run, unit: dict[str, Any], procs: ProcessTable, read: Read) -> Unit:
    props, scope = unit["props"], unit["scope"]
    where = exec_start_where(props, read)
    pid = int(props.get("MainPID") or 0)
    main = procs.get(pid) if pid else None
    workers = procs.children(pid) if pid else []
    sockets = [s for s in (props.get("TriggeredBy") or "").split() if s.endswith(".socket")]
    state = {
        "unit": props["Id"],
        "scope": scope["scope"],
        "user": scope.get("user"),
        "active": props.get("ActiveState"),
        "sub": props.get("SubState"),
        "result": props.get("Result"),
        "unit_file": props.get("FragmentPath"),
        "exec_start_where": where,
        "working_directory": props.get("WorkingDirectory") or None,
        "restarts": int(props.get("NRestarts") or 0),
        "need_daemon_reload": props.get("NeedDaemonReload") == "yes",
        "sockets": _socket_state(run, scope, sockets),
        "main_pid": pid or None,
        "main_started": _iso(main["start"]) if main else None,
        "workers": [{"pid": w["pid"], "started": _iso(w["start"])} for w in workers],
    }
    cwd = (props.get("WorkingDirectory") or "/").lstrip("!-")
    argv = _argv(main, props)
    state["server"] = server_settings(argv, unit_env(props, read), read, cwd)
    name = f"{props['Id']} ({unit['label']})"
    return Unit(name, props, where, state, main, workers, state["server"])


def unit_socket_only(u: Unit) -> dict[str, Any] | None:
    listening = [s for s in u.state["sockets"] if s["active"] == "active"]
    if u.props.get("ActiveState") != "inactive" or not listening:
        return None
    return finding(
        "backend.unit_socket_only",
        "warning",
        f"{u.name} is inactive but its socket {listening[0]['unit']} listens"
        f" ({', '.join(listening[0]['listen'])}): the next connection starts it",
        u.where,
    )


def unit_inactive(u: Unit) -> dict[str, Any] | None:
    if u.props.get("ActiveState") == "active" or unit_socket_only(u):
        return None
    socks = "; ".join(f"{s['unit']} is {s['active']}" for s in u.state["sockets"])
    error = u.journal.get("app_error")
    return finding(
        "backend.unit_inactive",
        "critical",
        f"the backend is down: {u.name} is {u.props.get('ActiveState')}"
        f" ({u.props.get('SubState')}, result {u.props.get('Result')})"
        + (f"; {socks}" if socks else "")
        + (
            f"; the app's own last error in its journal ({error['time']}): {error['message']}"
            if error
            else ""
        ),
        u.where,
        app_error=error,
    )


def restarts(u: Unit) -> dict[str, Any] | None:
    if not u.state["restarts"]:
        return None
    return finding(
        "backend.restarts",
        "warning",
        f"{u.name} was restarted {u.state['restarts']} times by systemd after failing",
        u.where,
    )


def unit_changed(u: Unit) -> dict[str, Any] | None:
    if not u.state["need_daemon_reload"]:
        return None
    return finding(
        "backend.unit_changed",
        "warning",
        f"the unit file of {u.name} changed on disk after systemd loaded it"
        " (daemon-reload and restart to apply it)",
        u.props.get("FragmentPath", ""),
    )


def _gunicorn(u: Unit, kind: str | None = None) -> dict[str, Any] | None:
    s = u.settings
    if not s or s["server"] != "gunicorn" or (kind and s["worker_kind"] != kind):
        return None
    return s


def _class_source(u: Unit, s: dict[str, Any]) -> str:
    src = s["worker_class_from"]
    return f"{src}, {u.where}" if src == "command line" else src


def sync_worker(u: Unit) -> dict[str, Any] | None:
    s = _gunicorn(u, "sync")
    if s is None:
        return None
    wc, timeout = s["worker_class"], s["timeout"]
    return finding(
        "backend.sync_worker",
        "critical",
        f"{u.name} runs Gunicorn's sync worker class ({wc}, from {_class_source(u, s)}) with"
        f" --timeout {timeout} ({s['timeout_from']}): a sync worker serves"
        " one request at a time and cannot keep a stream open; Gunicorn kills it"
        f" {timeout} s into a stream (WORKER TIMEOUT), and an ASGI app does not run"
        " on it at all. Use an async worker (-k uvicorn_worker.UvicornWorker)",
        u.where,
        worker_class=wc,
        timeout=s["timeout_s"],
    )


def thread_worker(u: Unit) -> dict[str, Any] | None:
    s = _gunicorn(u, "gthread")
    if s is None:
        return None
    return finding(
        "backend.thread_worker",
        "warning",
        f"{u.name} runs Gunicorn's threaded worker ({s['worker_class']}, threads {s['threads']}):"
        " every open stream holds a thread, so at most workers x threads streams",
        u.where,
    )


def worker_class(u: Unit) -> dict[str, Any] | None:
    s = _gunicorn(u, "unknown")
    if s is None:
        return None
    return finding(
        "backend.worker_class",
        "info",
        f"{u.name} runs Gunicorn worker class {s['worker_class']} ({_class_source(u, s)});"
        " not known to this check",
        u.where,
    )


def gunicorn_config(u: Unit) -> dict[str, Any] | None:
    s = _gunicorn(u)
    if s is None or not s.get("config_unreadable"):
        return None
    return finding(
        "backend.gunicorn_config",
        "warning",
        f"cannot read Gunicorn's config file {s.get('config_file')}: its"
        " worker class and timeout were not checked",
        u.where,
    )


def code_runners(u: Unit) -> list[dict[str, Any]]:
    """The processes that run the app's code as it was on disk when they started.

    Gunicorn's workers import the app when they start (a HUP reload starts new workers with
    the code on disk, under the same master), unless --preload imports it in the master;
    other servers: the main process and its children.
    """
    if _gunicorn(u) is not None and u.workers and not u.settings.get("preload"):
        return list(u.workers)
    return [p for p in [u.main, *u.workers] if p]


def stale_code(u: Unit, code: dict[str, Any] | None, procs: ProcessTable) -> dict[str, Any] | None:
    running = code_runners(u)
    if not code or not running:
        return None
    oldest = min(running, key=lambda p: p["start"])
    if not procs.after_start(code["mtime"], oldest):
        return None
    return finding(
        "backend.stale_code",
        "critical",
        f"{u.name} runs stale code: its {'main process' if oldest is u.main else 'worker'}"
        f" (PID {oldest['pid']}) started at {_iso(oldest['start'])}, before"
        f" {code['path']} was written at {_iso(code['mtime'])}; restart the service",
        code["path"],
    )


def stale_environment(u: Unit, procs: ProcessTable) -> list[dict[str, Any]]:
    out = []
    for env_file in env_files(u.props):
        try:
            mtime = os.stat(env_file.lstrip("-")).st_mtime
        except OSError:
            continue
        if u.main and procs.after_start(mtime, u.main):
            out.append(
                finding(
                    "backend.stale_environment",
                    "warning",
                    f"{env_file} changed at {_iso(mtime)}, after {u.name} started at"
                    f" {_iso(u.main['start'])}: the running process does not have it",
                    env_file,
                )
            )
    return out


def journal(u: Unit) -> dict[str, Any] | None:
    if u.journal["readable"]:
        return None
    return finding(
        "backend.journal", "info", f"cannot read the journal of {u.name}: {u.journal['error']}"
    )


def journal_errors_found(u: Unit) -> dict[str, Any] | None:
    j = u.journal
    if not j["readable"] or not j["errors"]:
        return None
    since_start = (
        f" ({j['errors_since_start']} since the running process started)"
        if "errors_since_start" in j
        else ""
    )
    timeouts = f", {j['worker_timeouts']} of them WORKER TIMEOUT" if j["worker_timeouts"] else ""
    return finding(
        "backend.journal_errors",
        "warning",
        f"{j['errors']} error lines from {u.name} in the journal in the window{since_start}"
        f"{timeouts}; last: {j['last'][-1]['message']}",
        "journal",
    )


def _journal(run: Run, unit: dict[str, Any], since: float, u: Unit) -> dict[str, Any]:
    found = journal_errors(run, unit, since)
    if found["readable"] and u.main:
        start = u.main["start"]
        found["errors_since_start"] = sum(1 for e in found.pop("all") if e["epoch"] >= start)
    else:
        found.pop("all", None)
    return found


CHECKS: list[Callable[[Unit], dict[str, Any] | None]] = [
    unit_socket_only,
    unit_inactive,
    restarts,
    unit_changed,
    sync_worker,
    thread_worker,
    worker_class,
    gunicorn_config,
]


def analyze_unit(
    run: Run,
    unit: dict[str, Any],
    procs: ProcessTable,
    since: float,
    read: Read,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """State, processes, server settings, code age and journal of one unit; its findings."""
    u = _observe(run, unit, procs, read)
    u.journal = _journal(run, unit, since, u)
    argv = u.settings["argv"] if u.settings else _argv(u.main, u.props)
    code = code_written(u.props.get("WorkingDirectory", "").lstrip("!-"), argv)
    u.state["code_written"] = {"path": code["path"], "at": _iso(code["mtime"])} if code else None
    u.state["code_runners"] = [p["pid"] for p in code_runners(u)]
    u.state["journal"] = u.journal
    found = [check(u) for check in CHECKS]
    found += [stale_code(u, code, procs), *stale_environment(u, procs)]
    found += [journal(u), journal_errors_found(u)]
    return u.state, [f for f in found if f]
