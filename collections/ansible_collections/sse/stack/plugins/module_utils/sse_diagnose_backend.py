"""The backend's systemd unit, processes and code on disk, for the SSE diagnosis (stdlib only).

Finds the unit in the system manager and in every lingering user's manager (a name, or any
service whose ExecStart runs an ASGI/WSGI server), then checks: is it active; did its
processes start after the installed code was last written (else they run stale code);
which Gunicorn worker class and --timeout it runs with (a sync worker is killed --timeout
seconds into a stream); what its journal says.

Everything that runs a command takes ``run(argv) -> (rc, stdout, stderr)``, so the unit
tests feed recorded output; nothing here writes anything.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_backend``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shlex
import time
from typing import Any, Callable

__all__ = [
    "ProcessTable",
    "analyze_unit",
    "code_written",
    "discover_units",
    "exec_argv",
    "journal_errors",
    "parse_show",
    "server_settings",
]

Run = Callable[[list[str]], "tuple[int, str, str]"]

PROPERTIES = [
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "UnitFileState",
    "MainPID",
    "ExecMainStartTimestamp",
    "ExecMainStatus",
    "ExecStart",
    "WorkingDirectory",
    "TriggeredBy",
    "FragmentPath",
    "DropInPaths",
    "Environment",
    "EnvironmentFiles",
    "NRestarts",
    "NeedDaemonReload",
]
# an ASGI/WSGI server in a unit's command line
SERVER_RE = re.compile(r"(^|[/\s])(gunicorn|uvicorn|hypercorn|daphne|granian)(\s|$)")
# what in a journal line counts as an error
ERROR_RE = re.compile(
    r"WORKER TIMEOUT|was sent SIGKILL|Traceback|\[(ERROR|CRITICAL)\]|Exception in ASGI"
    r"|Main process exited, code=(exited|killed|dumped), status=(?!0/)|Failed with result"
    r"|Failed to start|\w*(Error|Exception): ",
)
# files whose modification means new code (runtime files such as __pycache__ are not)
CODE_SUFFIXES = (".py", ".so", ".pth")
CODE_NAMES = ("RECORD", "METADATA", ".installed")
MAX_WALK = 60_000
LINGER_DIR = "/var/lib/systemd/linger"


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse_show(text: str) -> list[dict[str, str]]:
    """`systemctl show` output (units separated by blank lines) as dicts."""
    units, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                units.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        units.append(current)
    return units


def exec_argv(value: str) -> list[str]:
    """argv of the first command in a systemd ExecStart property ('{ path=...; argv[]=...}')."""
    match = re.search(r"argv\[\]=(.*?) ; (ignore_errors|flags)=", value or "")
    if not match:
        return []
    try:
        return shlex.split(match.group(1))
    except ValueError:
        return match.group(1).split()


def _option(argv: list[str], short: str | None, long: str) -> tuple[str | None, int | None]:
    """The last value of an option in argv (``-k X``, ``-kX``, ``--worker-class X`` / ``=X``)."""
    value, index = None, None
    for i, arg in enumerate(argv):
        if arg == long or (short and arg == short):
            if i + 1 < len(argv):
                value, index = argv[i + 1], i
        elif arg.startswith(long + "="):
            value, index = arg.split("=", 1)[1], i
        elif short and arg.startswith(short) and not arg.startswith("--") and len(arg) > len(short):
            value, index = arg[len(short) :], i
    return value, index


def _config_value(text: str, name: str) -> str | None:
    matches = list(re.finditer(rf"^\s*{name}\s*=\s*(.+?)\s*(#.*)?$", text, re.M))
    if not matches:
        return None
    return matches[-1].group(1).strip().strip("\"'")


def server_settings(
    argv: list[str],
    env: dict[str, str] | None = None,
    read: Callable[[str], str | None] | None = None,
    cwd: str = "/",
) -> dict[str, Any] | None:
    """Which server the command line runs and, for Gunicorn, its worker class and timeout.

    Precedence as Gunicorn applies it: command line over GUNICORN_CMD_ARGS over the config
    file over the defaults (sync, 30 s).
    """
    joined = " ".join(argv)
    match = SERVER_RE.search(joined)
    if not match:
        return None
    server = match.group(2)
    out: dict[str, Any] = {"server": server, "argv": argv}
    if server != "gunicorn":
        return out
    env = env or {}
    sources: list[tuple[str, list[str]]] = []
    config, _ = _option(argv, "-c", "--config")
    config = config or (
        "gunicorn.conf.py" if read and read(os.path.join(cwd, "gunicorn.conf.py")) else None
    )
    if config:
        path = (
            config
            if config.startswith("/") or config.startswith("python:")
            else os.path.join(cwd, config)
        )
        text = read(path) if read and not config.startswith("python:") else None
        out["config_file"] = path
        if text is not None:
            conf_argv = []
            for name, flag in (
                ("worker_class", "--worker-class"),
                ("timeout", "--timeout"),
                ("workers", "--workers"),
                ("threads", "--threads"),
            ):
                value = _config_value(text, name)
                if value is not None:
                    conf_argv += [flag, value]
            sources.append((f"config file {path}", conf_argv))
        else:
            out["config_unreadable"] = True
    if env.get("GUNICORN_CMD_ARGS"):
        sources.append(("GUNICORN_CMD_ARGS", shlex.split(env["GUNICORN_CMD_ARGS"])))
    sources.append(("command line", argv))
    settings = {
        "worker_class": ("sync", "Gunicorn's default"),
        "timeout": ("30", "Gunicorn's default"),
        "workers": ("1", "Gunicorn's default"),
        "threads": ("1", "Gunicorn's default"),
    }
    for label, args in sources:
        for key, short, long in (
            ("worker_class", "-k", "--worker-class"),
            ("timeout", "-t", "--timeout"),
            ("workers", "-w", "--workers"),
            ("threads", None, "--threads"),
        ):
            value, _ = _option(args, short, long)
            if value is not None:
                settings[key] = (value, label)
    for key, (value, label) in settings.items():
        out[key] = value
        out[key + "_from"] = label
    try:
        out["timeout_s"] = float(out["timeout"])
    except ValueError:
        out["timeout_s"] = None
    wc = out["worker_class"].lower()
    out["worker_kind"] = (
        "sync"
        if wc in ("sync", "gunicorn.workers.sync.syncworker") or wc.endswith(".syncworker")
        else "gthread"
        if "gthread" in wc or "threadworker" in wc
        else "async"
        if any(
            w in wc
            for w in ("uvicorn", "gevent", "eventlet", "tornado", "asgi", "gaiohttp", "aiohttp")
        )
        else "unknown"
    )
    if out["worker_kind"] == "sync" and int(out.get("threads") or 1) > 1:
        out["worker_kind"] = "gthread"  # Gunicorn switches sync to gthread when threads > 1
    return out


# --------------------------------------------------------------------------------------------
# Processes and files
# --------------------------------------------------------------------------------------------


class ProcessTable:
    """pid -> (ppid, start time as epoch seconds, command line) from /proc."""

    def __init__(self, proc: str = "/proc") -> None:
        self.procs: dict[int, dict[str, Any]] = {}
        try:
            ticks = os.sysconf("SC_CLK_TCK")
            with open(os.path.join(proc, "stat")) as handle:
                btime = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        except (OSError, StopIteration, ValueError):
            return
        for entry in os.listdir(proc):
            if not entry.isdigit():
                continue
            try:
                with open(os.path.join(proc, entry, "stat")) as handle:
                    stat = handle.read()
                with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                    cmdline = handle.read().split(b"\0")
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            self.procs[int(entry)] = {
                "pid": int(entry),
                "ppid": int(fields[1]),
                "start": btime + int(fields[19]) / ticks,
                "cmdline": [a.decode("utf-8", "replace") for a in cmdline if a],
            }

    def get(self, pid: int) -> dict[str, Any] | None:
        return self.procs.get(pid)

    def children(self, pid: int) -> list[dict[str, Any]]:
        return [p for p in self.procs.values() if p["ppid"] == pid]

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [p for p in self.procs.values() if predicate(p)]


def code_written(working_dir: str, argv: list[str]) -> dict[str, Any] | None:
    """The newest code file of the unit: its release marker and its virtualenv's site-packages.

    Looks at ``<WorkingDirectory>/.installed`` (this project's release marker) and at the
    code files (*.py, *.so, *.pth, dist-info RECORD/METADATA) of the virtualenv ExecStart
    runs from, and of WorkingDirectory. Runtime files (__pycache__) are not code.
    """
    roots = []
    if working_dir and os.path.isdir(working_dir):
        roots.append(os.path.realpath(working_dir))
    exe = argv[0] if argv else ""
    if exe.startswith("/") and os.path.basename(os.path.dirname(exe)) == "bin":
        venv = os.path.realpath(os.path.dirname(os.path.dirname(exe)))
        roots.extend(glob.glob(os.path.join(venv, "lib", "python*", "site-packages")))
    # a root inside another one is walked with it
    roots = [
        r for r in dict.fromkeys(roots) if not any(r.startswith(o + "/") for o in roots if o != r)
    ]
    newest: dict[str, Any] | None = None
    walked = 0
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                walked += 1
                if walked > MAX_WALK:
                    break
                if not (name.endswith(CODE_SUFFIXES) or name in CODE_NAMES):
                    continue
                path = os.path.join(folder, name)
                try:
                    mtime = os.lstat(path).st_mtime
                except OSError:
                    continue
                if newest is None or mtime > newest["mtime"]:
                    newest = {"path": path, "mtime": mtime}
    if newest is not None:
        newest["files_seen"] = walked
    return newest


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


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


def discover_units(
    run: Run, unit: str = "", users: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Backend units in the system manager and each user manager; and findings on the way.

    ``unit``: a unit name to look for; empty: every service whose ExecStart runs an
    ASGI/WSGI server (gunicorn, uvicorn, hypercorn, daphne, granian).
    """
    scopes = [{"scope": "system"}] + [
        {
            "scope": "user",
            "user": u["user"],
            "uid": u["uid"],
            "lingering": u["lingering"],
            "bus": u["bus"],
        }
        for u in (users if users is not None else user_managers())
    ]
    found, findings = [], []
    name = unit if not unit or "." in unit else unit + ".service"
    for scope in scopes:
        label = "system" if scope["scope"] == "system" else f"user {scope['user']}"
        if scope["scope"] == "user" and not scope["bus"]:
            findings.append(
                {
                    "id": "backend.user_manager",
                    "severity": "info" if not scope.get("lingering") else "warning",
                    "message": f"the systemd manager of {label} is not running"
                    f" (no /run/user/{scope['uid']}/bus): its user units were not checked",
                    "where": "",
                }
            )
            continue
        base = systemctl(scope)
        if name:
            candidates = [name]
        else:
            rc1, files, _ = run(
                [*base, "list-unit-files", "--type=service", "--no-legend", "--plain"]
            )
            rc2, loaded, _ = run(
                [*base, "list-units", "--type=service", "--all", "--no-legend", "--plain"]
            )
            candidates = sorted(set(_names(files)) | set(_names(loaded)))
            if rc1 != 0 and rc2 != 0:
                findings.append(
                    {
                        "id": "backend.systemctl",
                        "severity": "warning",
                        "message": f"cannot list the units of {label}:"
                        f" {(files or loaded).strip()[:200]}",
                        "where": "",
                    }
                )
                continue
            if candidates:
                rc, out, _ = run([*base, "show", "-p", "Id", "-p", "ExecStart", "--", *candidates])
                candidates = [
                    u["Id"]
                    for u in parse_show(out)
                    if u.get("Id") and SERVER_RE.search(" ".join(exec_argv(u.get("ExecStart", ""))))
                ]
        if not candidates:
            continue
        rc, out, err = run(
            [*base, "show", *[a for p in PROPERTIES for a in ("-p", p)], "--", *candidates]
        )
        if rc != 0:
            findings.append(
                {
                    "id": "backend.systemctl",
                    "severity": "warning",
                    "message": f"systemctl show in {label} failed: {(err or out).strip()[:200]}",
                    "where": "",
                }
            )
            continue
        for props in parse_show(out):
            if props.get("LoadState") in ("not-found", "") or not props.get("Id"):
                continue
            found.append({"scope": scope, "label": label, "props": props})
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


def journal_errors(
    run: Run, unit: dict[str, Any], since: float, limit: int = 400
) -> dict[str, Any]:
    """Error lines of the unit in the journal since ``since`` (epoch)."""
    scope, unit_id = unit["scope"], unit["props"]["Id"]
    base = ["journalctl", "--no-pager", "-o", "json", f"--since=@{int(since)}", "-n", str(limit)]
    if scope["scope"] == "system":
        argv = [*base, "-u", unit_id]
    else:
        uid = str(scope["uid"])
        argv = [
            *base,
            f"_SYSTEMD_USER_UNIT={unit_id}",
            f"_UID={uid}",
            "+",
            f"USER_UNIT={unit_id}",
            f"_UID={uid}",
        ]
    rc, out, err = run(argv)
    if rc != 0:
        return {
            "readable": False,
            "error": (err or out).strip()[:300],
            "errors": 0,
            "lines": 0,
            "last": [],
        }
    errors, lines = [], 0
    for raw in out.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        lines += 1
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # non-UTF-8 messages come as byte arrays
            message = bytes(m for m in message if isinstance(m, int)).decode("utf-8", "replace")
        message = str(message or "")
        priority = int(entry.get("PRIORITY", 6) or 6)
        if priority <= 3 or ERROR_RE.search(message):
            stamp = int(entry.get("__REALTIME_TIMESTAMP", 0) or 0) / 1e6
            errors.append({"time": _iso(stamp), "epoch": stamp, "message": message[:300]})
    return {
        "readable": True,
        "errors": len(errors),
        "lines": lines,
        "last": [{"time": e["time"], "message": e["message"]} for e in errors[-8:]],
        "all": errors,
        "worker_timeouts": sum(1 for e in errors if "WORKER TIMEOUT" in e["message"]),
    }


def _env(props: dict[str, str], read: Callable[[str], str | None]) -> dict[str, str]:
    """Only GUNICORN_CMD_ARGS from the unit's Environment and EnvironmentFiles (no secrets kept)."""
    env: dict[str, str] = {}
    for word in shlex.split(props.get("Environment", "") or ""):
        key, _, value = word.partition("=")
        if key == "GUNICORN_CMD_ARGS":
            env[key] = value
    for item in re.findall(r"(\S+) \(ignore_errors=", props.get("EnvironmentFiles", "") or ""):
        text = read(item.lstrip("-")) or ""
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "GUNICORN_CMD_ARGS":
                env["GUNICORN_CMD_ARGS"] = value.strip().strip("\"'")
    return env


def _exec_start_where(props: dict[str, str], read: Callable[[str], str | None]) -> str:
    """file:line of the ExecStart= in effect (the last one among the unit file and drop-ins)."""
    where = ""
    files = [props.get("FragmentPath", ""), *(props.get("DropInPaths", "") or "").split()]
    for path in files:
        text = read(path) if path else None
        for number, line in enumerate((text or "").splitlines(), 1):
            if re.match(r"\s*ExecStart\s*=", line):
                where = f"{path}:{number}"
    return where or props.get("FragmentPath", "")


def analyze_unit(
    run: Run,
    unit: dict[str, Any],
    procs: ProcessTable,
    since: float,
    read: Callable[[str], str | None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """State, processes, server settings, code age and journal of one unit; its findings."""
    props, scope, label = unit["props"], unit["scope"], unit["label"]
    name = f"{props['Id']} ({label})"
    findings: list[dict[str, Any]] = []
    exec_where = _exec_start_where(props, read)
    state = {
        "unit": props["Id"],
        "scope": scope["scope"],
        "user": scope.get("user"),
        "active": props.get("ActiveState"),
        "sub": props.get("SubState"),
        "result": props.get("Result"),
        "unit_file": props.get("FragmentPath"),
        "exec_start_where": exec_where,
        "working_directory": props.get("WorkingDirectory") or None,
        "restarts": int(props.get("NRestarts") or 0),
        "need_daemon_reload": props.get("NeedDaemonReload") == "yes",
    }
    sockets = [s for s in (props.get("TriggeredBy") or "").split() if s.endswith(".socket")]
    state["sockets"] = _socket_state(run, scope, sockets)

    pid = int(props.get("MainPID") or 0)
    main = procs.get(pid) if pid else None
    workers = procs.children(pid) if pid else []
    state["main_pid"] = pid or None
    state["main_started"] = _iso(main["start"]) if main else None
    state["workers"] = [{"pid": w["pid"], "started": _iso(w["start"])} for w in workers]
    argv = main["cmdline"] if main else exec_argv(props.get("ExecStart", ""))
    # the python interpreter in front of the script: look at the script
    if (
        argv
        and re.search(r"/python[0-9.]*$", argv[0])
        and len(argv) > 1
        and not argv[1].startswith("-")
    ):
        argv = argv[1:]
    cwd = props.get("WorkingDirectory") or "/"
    cwd = cwd.lstrip("!-")
    settings = server_settings(argv, _env(props, read), read, cwd)
    state["server"] = settings

    if props.get("ActiveState") != "active":
        listening = [s for s in state["sockets"] if s["active"] == "active"]
        if listening and props.get("ActiveState") == "inactive":
            findings.append(
                {
                    "id": "backend.unit_socket_only",
                    "severity": "warning",
                    "message": f"{name} is inactive but its socket {listening[0]['unit']} listens"
                    f" ({', '.join(listening[0]['listen'])}): the next connection starts it",
                    "where": exec_where,
                }
            )
        else:
            socks = "; ".join(f"{s['unit']} is {s['active']}" for s in state["sockets"])
            findings.append(
                {
                    "id": "backend.unit_inactive",
                    "severity": "critical",
                    "message": f"the backend is down: {name} is {props.get('ActiveState')}"
                    f" ({props.get('SubState')}, result {props.get('Result')})"
                    + (f"; {socks}" if socks else ""),
                    "where": exec_where,
                }
            )
    if state["restarts"] > 0:
        findings.append(
            {
                "id": "backend.restarts",
                "severity": "warning",
                "message": f"{name} was restarted {state['restarts']} times by systemd"
                " after failing",
                "where": exec_where,
            }
        )
    if state["need_daemon_reload"]:
        findings.append(
            {
                "id": "backend.unit_changed",
                "severity": "warning",
                "message": f"the unit file of {name} changed on disk after systemd loaded it"
                " (daemon-reload and restart to apply it)",
                "where": props.get("FragmentPath", ""),
            }
        )

    if settings and settings["server"] == "gunicorn":
        wc, timeout = settings["worker_class"], settings["timeout"]
        src = (
            f"{settings['worker_class_from']}, {exec_where}"
            if settings["worker_class_from"] == "command line"
            else settings["worker_class_from"]
        )
        if settings["worker_kind"] == "sync":
            findings.append(
                {
                    "id": "backend.sync_worker",
                    "severity": "critical",
                    "message": f"{name} runs Gunicorn's sync worker class ({wc}, from {src}) with"
                    f" --timeout {timeout} ({settings['timeout_from']}): a sync worker serves"
                    " one request at a time and cannot keep a stream open; Gunicorn kills it"
                    f" {timeout} s into a stream (WORKER TIMEOUT), and an ASGI app does not run"
                    " on it at all. Use an async worker (-k uvicorn_worker.UvicornWorker)",
                    "where": exec_where,
                    "worker_class": wc,
                    "timeout": settings["timeout_s"],
                }
            )
        elif settings["worker_kind"] == "gthread":
            findings.append(
                {
                    "id": "backend.thread_worker",
                    "severity": "warning",
                    "message": f"{name} runs Gunicorn's threaded worker ({wc},"
                    f" threads {settings['threads']}):"
                    " every open stream holds a thread, so at most workers x threads streams",
                    "where": exec_where,
                }
            )
        elif settings["worker_kind"] == "unknown":
            findings.append(
                {
                    "id": "backend.worker_class",
                    "severity": "info",
                    "message": f"{name} runs Gunicorn worker class {wc} ({src}); not known"
                    " to this check",
                    "where": exec_where,
                }
            )
        if settings.get("config_unreadable"):
            findings.append(
                {
                    "id": "backend.gunicorn_config",
                    "severity": "warning",
                    "message": "cannot read Gunicorn's config file"
                    f" {settings.get('config_file')}: its"
                    " worker class and timeout were not checked",
                    "where": exec_where,
                }
            )

    code = code_written(props.get("WorkingDirectory", "").lstrip("!-"), argv)
    state["code_written"] = {"path": code["path"], "at": _iso(code["mtime"])} if code else None
    running = [p for p in [main, *workers] if p]
    if code and running:
        oldest = min(running, key=lambda p: p["start"])
        if code["mtime"] > oldest["start"]:
            findings.append(
                {
                    "id": "backend.stale_code",
                    "severity": "critical",
                    "message": f"{name} runs stale code: its"
                    f" {'main process' if oldest is main else 'worker'}"
                    f" (PID {oldest['pid']}) started at {_iso(oldest['start'])}, before"
                    f" {code['path']} was written at {_iso(code['mtime'])}; restart the service",
                    "where": code["path"],
                }
            )
    for env_file in re.findall(r"(\S+) \(ignore_errors=", props.get("EnvironmentFiles", "") or ""):
        try:
            mtime = os.stat(env_file.lstrip("-")).st_mtime
        except OSError:
            continue
        if main and mtime > main["start"]:
            findings.append(
                {
                    "id": "backend.stale_environment",
                    "severity": "warning",
                    "message": f"{env_file} changed at {_iso(mtime)}, after {name} started at"
                    f" {_iso(main['start'])}: the running process does not have it",
                    "where": env_file,
                }
            )

    journal = journal_errors(run, unit, since)
    if journal["readable"] and main:
        journal["errors_since_start"] = sum(
            1 for e in journal.pop("all") if e["epoch"] >= main["start"]
        )
    else:
        journal.pop("all", None)
    state["journal"] = journal
    if not journal["readable"]:
        findings.append(
            {
                "id": "backend.journal",
                "severity": "info",
                "message": f"cannot read the journal of {name}: {journal['error']}",
                "where": "",
            }
        )
    elif journal["errors"]:
        last = journal["last"][-1]["message"]
        findings.append(
            {
                "id": "backend.journal_errors",
                "severity": "warning",
                "message": f"{journal['errors']} error lines from {name} in the journal"
                " in the window"
                + (
                    f" ({journal['errors_since_start']} since the running process started)"
                    if "errors_since_start" in journal
                    else ""
                )
                + (
                    f", {journal['worker_timeouts']} of them WORKER TIMEOUT"
                    if journal["worker_timeouts"]
                    else ""
                )
                + f"; last: {last}",
                "where": "journal",
            }
        )
    return state, findings
