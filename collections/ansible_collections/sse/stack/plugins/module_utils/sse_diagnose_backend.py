"""The backend's processes, server settings, code on disk and journal (standard library only).

Reads what the SSE diagnosis needs about one backend unit: which server its command line
runs (for Gunicorn: worker class, --timeout, --preload, as Gunicorn applies them), when its
processes started (``ProcessTable``, precise to one clock tick), when its code was last
written (``code_written``) and what its journal says (``journal_errors``, with the app's own
error apart from systemd's lines). Finding the unit and the findings about it are in
``sse_diagnose_backend_units``.

Everything that runs a command takes ``run(argv) -> (rc, stdout, stderr)``, so the unit
tests feed recorded output; nothing here writes anything.

No Ansible imports: shipped as the collection module_utils ``sse_diagnose_backend``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import time
from typing import Any, Callable

__all__ = [
    "ProcessTable",
    "code_written",
    "exec_argv",
    "journal_errors",
    "parse_show",
    "server_settings",
]

Run = Callable[[list[str]], "tuple[int, str, str]"]
Read = Callable[[str], "str | None"]


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


# --------------------------------------------------------------------------------------------
# the line of a traceback that names the error ("ValueError: ...", "pkg.mod.Error: ...")
EXCEPTION_RE = re.compile(r"^\s*[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*: ")

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


# Gunicorn settings the diagnosis reads: (key, short option, long option, config file name)
GUNICORN_OPTIONS = [
    ("worker_class", "-k", "--worker-class", "worker_class"),
    ("timeout", "-t", "--timeout", "timeout"),
    ("workers", "-w", "--workers", "workers"),
    ("threads", None, "--threads", "threads"),
]
GUNICORN_DEFAULTS = {"worker_class": "sync", "timeout": "30", "workers": "1", "threads": "1"}
ASYNC_WORKERS = ("uvicorn", "gevent", "eventlet", "tornado", "asgi", "gaiohttp", "aiohttp")


def _config_file(
    argv: list[str], read: Read | None, cwd: str, out: dict[str, Any]
) -> tuple[str, list[str]] | None:
    """Gunicorn's config file as an argv source (``-c``, else ./gunicorn.conf.py if present)."""
    config, _ = _option(argv, "-c", "--config")
    config = config or (
        "gunicorn.conf.py" if read and read(os.path.join(cwd, "gunicorn.conf.py")) else None
    )
    if not config:
        return None
    path = config if config.startswith(("/", "python:")) else os.path.join(cwd, config)
    text = read(path) if read and not config.startswith("python:") else None
    out["config_file"] = path
    if text is None:
        out["config_unreadable"] = True
        return None
    conf_argv: list[str] = []
    for _, _, flag, name in GUNICORN_OPTIONS:
        value = _config_value(text, name)
        if value is not None:
            conf_argv += [flag, value]
    if (_config_value(text, "preload_app") or "").lower() == "true":
        conf_argv.append("--preload")
    return f"config file {path}", conf_argv


def worker_kind(worker_class: str, threads: str) -> str:
    """sync, gthread, async or unknown: how a Gunicorn worker class holds a stream."""
    wc = worker_class.lower()
    if wc in ("sync", "gunicorn.workers.sync.syncworker") or wc.endswith(".syncworker"):
        # Gunicorn switches sync to gthread when threads > 1
        return "gthread" if threads.isdigit() and int(threads) > 1 else "sync"
    if "gthread" in wc or "threadworker" in wc:
        return "gthread"
    if any(w in wc for w in ASYNC_WORKERS):
        return "async"
    return "unknown"


def server_settings(
    argv: list[str],
    env: dict[str, str] | None = None,
    read: Read | None = None,
    cwd: str = "/",
) -> dict[str, Any] | None:
    """Which server the command line runs and, for Gunicorn, its worker class and timeout.

    Precedence as Gunicorn applies it: command line over GUNICORN_CMD_ARGS over the config
    file over the defaults (sync, 30 s). ``preload``: the master imports the app
    (``--preload`` / ``preload_app``), so a HUP reload does not load new code.
    """
    match = SERVER_RE.search(" ".join(argv))
    if not match:
        return None
    out: dict[str, Any] = {"server": match.group(2), "argv": argv}
    if out["server"] != "gunicorn":
        return out
    sources = [source] if (source := _config_file(argv, read, cwd, out)) else []
    if (env or {}).get("GUNICORN_CMD_ARGS"):
        sources.append(("GUNICORN_CMD_ARGS", shlex.split((env or {})["GUNICORN_CMD_ARGS"])))
    sources.append(("command line", argv))
    settings = {key: (value, "Gunicorn's default") for key, value in GUNICORN_DEFAULTS.items()}
    for label, args in sources:
        for key, short, long, _ in GUNICORN_OPTIONS:
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
    out["worker_kind"] = worker_kind(out["worker_class"], out["threads"])
    out["preload"] = any("--preload" in args for _, args in sources)
    return out


# --------------------------------------------------------------------------------------------
# Processes and files
# --------------------------------------------------------------------------------------------


def _clocks() -> tuple[float, float]:
    """(CLOCK_REALTIME, CLOCK_BOOTTIME) read back to back."""
    return time.time(), time.clock_gettime(time.CLOCK_BOOTTIME)


class ProcessTable:
    """pid -> (ppid, start time as epoch seconds, command line) from /proc.

    A start is /proc/<pid>/stat's starttime (clock ticks since boot, counted on the boot
    clock and truncated to a tick, 1/SC_CLK_TCK s: 10 ms on Linux) added to the boot time.
    The boot time is now (CLOCK_REALTIME) minus the time since boot (CLOCK_BOOTTIME), exact
    to microseconds; /proc/stat's btime is truncated to the second, which put starts up to
    1 s early. So a start is rounded DOWN to one tick: the process started in
    [start, start + tick). ``clock`` says which boot time was used and its precision.
    """

    def __init__(
        self,
        proc: str = "/proc",
        clocks: Callable[[], tuple[float, float]] | None = _clocks,
        ticks: int | None = None,
    ) -> None:
        self.procs: dict[int, dict[str, Any]] = {}
        self.tick = 1 / (ticks or os.sysconf("SC_CLK_TCK"))
        self.clock: dict[str, Any] = {}
        boot = self._boot(proc, clocks)
        if boot is None:
            return
        try:
            entries = os.listdir(proc)
        except OSError:
            return
        for entry in entries:
            if entry.isdigit():
                self._read(proc, int(entry), boot)

    def _boot(self, proc: str, clocks: Callable[[], tuple[float, float]] | None) -> float | None:
        try:
            realtime, boottime = clocks() if clocks else (0.0, -1.0)
        except (AttributeError, OSError):  # no CLOCK_BOOTTIME: the whole-second btime
            realtime, boottime = 0.0, -1.0
        if boottime >= 0:
            precision = round(self.tick, 6)
            self.clock = {"boot": "CLOCK_REALTIME - CLOCK_BOOTTIME", "precision_s": precision}
            self.clock["rounding"] = f"start ticks truncated: a start is exact to -0/+{precision} s"
            return realtime - boottime
        try:
            with open(os.path.join(proc, "stat")) as handle:
                btime = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        except (OSError, StopIteration, ValueError):
            return None
        self.clock = {"boot": "/proc/stat btime", "precision_s": 1 + round(self.tick, 6)}
        self.clock["rounding"] = "btime truncated to the second: a start is up to 1 s early"
        return float(btime)

    def _read(self, proc: str, pid: int, boot: float) -> None:
        try:
            with open(os.path.join(proc, str(pid), "stat")) as handle:
                stat = handle.read()
            with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except OSError:
            return
        fields = stat[stat.rfind(")") + 2 :].split()
        self.procs[pid] = {
            "pid": pid,
            "ppid": int(fields[1]),
            "start": boot + int(fields[19]) * self.tick,
            "cmdline": [a.decode("utf-8", "replace") for a in cmdline if a],
        }

    def after_start(self, epoch: float, process: dict[str, Any]) -> bool:
        """Whether ``epoch`` (a file time) is surely after the process started."""
        precision = self.clock.get("precision_s", self.tick) if self.clock else self.tick
        return epoch > process["start"] + precision

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
# The journal
# --------------------------------------------------------------------------------------------


def _journal_argv(unit: dict[str, Any], since: float, limit: int) -> list[str]:
    """journalctl for the unit: its processes' lines and its manager's lines about it."""
    scope, unit_id = unit["scope"], unit["props"]["Id"]
    base = ["journalctl", "--no-pager", "-o", "json", f"--since=@{int(since)}", "-n", str(limit)]
    if scope["scope"] == "system":
        return [*base, "-u", unit_id]
    uid = str(scope["uid"])
    # the app's own lines carry _SYSTEMD_USER_UNIT; the user manager's about it, USER_UNIT
    return [
        *base,
        f"_SYSTEMD_USER_UNIT={unit_id}",
        f"_UID={uid}",
        "+",
        f"USER_UNIT={unit_id}",
        f"_UID={uid}",
    ]


def _journal_line(entry: dict[str, Any], unit: dict[str, Any]) -> dict[str, Any]:
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # non-UTF-8 messages come as byte arrays
        message = bytes(m for m in message if isinstance(m, int)).decode("utf-8", "replace")
    # written by the unit's own processes, not by systemd about the unit
    own = "_SYSTEMD_USER_UNIT" if unit["scope"]["scope"] == "user" else "_SYSTEMD_UNIT"
    stamp = int(entry.get("__REALTIME_TIMESTAMP", 0) or 0) / 1e6
    return {
        "message": str(message or ""),
        "priority": int(entry.get("PRIORITY", 6) or 6),
        "from_app": entry.get(own) == unit["props"]["Id"] and str(entry.get("_PID")) != "1",
        "time": _iso(stamp),
        "epoch": stamp,
    }


def app_error(errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The app's own last error: its last exception line, else its last error line."""
    own = [e for e in errors if e["from_app"]]
    named = [e for e in own if EXCEPTION_RE.search(e["message"])]
    last = (named or own or [None])[-1]
    return {"time": last["time"], "message": last["message"]} if last else None


def journal_errors(
    run: Run, unit: dict[str, Any], since: float, limit: int = 400
) -> dict[str, Any]:
    """Error lines of the unit in the journal since ``since`` (epoch)."""
    rc, out, err = run(_journal_argv(unit, since, limit))
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
            line = _journal_line(json.loads(raw), unit)
        except (ValueError, AttributeError):
            continue
        lines += 1
        if line["priority"] <= 3 or ERROR_RE.search(line["message"]):
            line["message"] = line["message"][:300]
            errors.append(line)
    return {
        "readable": True,
        "errors": len(errors),
        "lines": lines,
        "last": [{"time": e["time"], "message": e["message"]} for e in errors[-8:]],
        "app_error": app_error(errors),
        "all": errors,
        "worker_timeouts": sum(1 for e in errors if "WORKER TIMEOUT" in e["message"]),
    }


# --------------------------------------------------------------------------------------------
# The unit's files
# --------------------------------------------------------------------------------------------


def unit_env(props: dict[str, str], read: Read) -> dict[str, str]:
    """Only GUNICORN_CMD_ARGS from the unit's Environment and EnvironmentFiles (no secrets kept)."""
    env: dict[str, str] = {}
    for word in shlex.split(props.get("Environment", "") or ""):
        key, _, value = word.partition("=")
        if key == "GUNICORN_CMD_ARGS":
            env[key] = value
    for item in env_files(props):
        text = read(item.lstrip("-")) or ""
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "GUNICORN_CMD_ARGS":
                env["GUNICORN_CMD_ARGS"] = value.strip().strip("\"'")
    return env


def env_files(props: dict[str, str]) -> list[str]:
    return re.findall(r"(\S+) \(ignore_errors=", props.get("EnvironmentFiles", "") or "")


def exec_start_where(props: dict[str, str], read: Read) -> str:
    """file:line of the ExecStart= in effect (the last one among the unit file and drop-ins)."""
    where = ""
    files = [props.get("FragmentPath", ""), *(props.get("DropInPaths", "") or "").split()]
    for path in files:
        text = read(path) if path else None
        for number, line in enumerate((text or "").splitlines(), 1):
            if re.match(r"\s*ExecStart\s*=", line):
                where = f"{path}:{number}"
    return where or props.get("FragmentPath", "")
