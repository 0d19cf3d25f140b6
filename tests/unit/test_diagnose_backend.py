"""Backend unit checks: discovery in system and user managers, worker class, stale code, journal."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_backend as be
from ansible_collections.sse.stack.plugins.module_utils import sse_diagnose_backend_units as bu

PROJECT_EXEC = (
    "{ path=/var/lib/sse/sse-backend/current/venv/bin/gunicorn ;"
    " argv[]=/var/lib/sse/sse-backend/current/venv/bin/gunicorn"
    " --worker-class uvicorn_worker.UvicornH11Worker --workers 1 --graceful-timeout 10"
    " --no-control-socket"
    " --access-logfile - --error-logfile - sse_app.main:app ; ignore_errors=no ; start_time=[n/a] ;"
    " stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
)


def exec_start(argv: str) -> str:
    return (
        f"{{ path=x ; argv[]={argv} ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ;"
        " pid=0 ; code=(null) ; status=0/0 }"
    )


def show(**units: dict[str, str]) -> str:
    return (
        "\n\n".join("\n".join(f"{k}={v}" for k, v in props.items()) for props in units.values())
        + "\n"
    )


class FakeSystem:
    """systemctl / journalctl answers keyed by scope; records every command."""

    def __init__(
        self,
        system: dict[str, dict[str, str]],
        users: dict[str, dict[str, dict[str, str]]] | None = None,
        journal: list[dict[str, str]] | None = None,
    ) -> None:
        self.scopes = {"system": system, **(users or {})}
        self.journal = journal or []
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        if argv[0] == "journalctl":
            return 0, "\n".join(json.dumps(e) for e in self.journal), ""
        scope = argv[2] if argv[0] == "runuser" else "system"
        units = self.scopes.get(scope, {})
        rest = argv[argv.index("--no-pager") + 1 :]
        if rest[0] == "list-unit-files":
            return 0, "".join(f"{name} enabled enabled\n" for name in units), ""
        if rest[0] == "list-units":
            return 0, "".join(f"{name} loaded active running x\n" for name in units), ""
        if rest[0] == "show":
            names = rest[rest.index("--") + 1 :]
            props = [p for i, p in enumerate(rest) if i and rest[i - 1] == "-p"]
            out = []
            for name in names:
                unit = units.get(name, {"Id": name, "LoadState": "not-found"})
                out.append("\n".join(f"{p}={unit.get(p, '')}" for p in props))
            return 0, "\n\n".join(out) + "\n", ""
        return 1, "", f"unexpected {argv}"


# --- parsing --------------------------------------------------------------------------------


def test_parse_show_and_exec_argv():
    units = be.parse_show("Id=a.service\nActiveState=active\n\nId=b.service\nActiveState=failed\n")
    assert [u["Id"] for u in units] == ["a.service", "b.service"]
    assert be.exec_argv(PROJECT_EXEC)[:3] == [
        "/var/lib/sse/sse-backend/current/venv/bin/gunicorn",
        "--worker-class",
        "uvicorn_worker.UvicornH11Worker",
    ]
    assert be.exec_argv("") == []


@pytest.mark.parametrize(
    ("argv", "env", "kind", "worker_class", "timeout", "source"),
    [
        (
            "/v/bin/gunicorn --worker-class uvicorn_worker.UvicornH11Worker app:app",
            {},
            "async",
            "uvicorn_worker.UvicornH11Worker",
            "30",
            "Gunicorn's default",
        ),
        ("/v/bin/gunicorn -k sync --timeout 5 app:app", {}, "sync", "sync", "5", "command line"),
        ("/v/bin/gunicorn app:app", {}, "sync", "sync", "30", "Gunicorn's default"),
        (
            "/v/bin/gunicorn --worker-class=gthread --threads 4 -t 120 app:app",
            {},
            "gthread",
            "gthread",
            "120",
            "command line",
        ),
        (
            "/v/bin/gunicorn -k sync --threads 4 app:app",
            {},
            "gthread",
            "sync",
            "30",
            "Gunicorn's default",
        ),
        ("/v/bin/gunicorn -kgevent app:app", {}, "async", "gevent", "30", "Gunicorn's default"),
        (
            "/v/bin/gunicorn -k uvicorn.workers.UvicornWorker app:app",
            {"GUNICORN_CMD_ARGS": "-k sync --timeout 7"},
            "async",
            "uvicorn.workers.UvicornWorker",
            "7",
            "GUNICORN_CMD_ARGS",
        ),
        (
            "/usr/bin/python3 -m gunicorn app:app",
            {"GUNICORN_CMD_ARGS": "--timeout=9"},
            "sync",
            "sync",
            "9",
            "GUNICORN_CMD_ARGS",
        ),
    ],
)
def test_gunicorn_worker_class_and_timeout(argv, env, kind, worker_class, timeout, source):
    settings = be.server_settings(argv.split(), env)
    assert settings["server"] == "gunicorn"
    assert settings["worker_kind"] == kind
    assert settings["worker_class"] == worker_class
    assert settings["timeout"] == timeout
    assert settings["timeout_from"] == source


def test_gunicorn_config_file_then_command_line(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('worker_class = "sync"\ntimeout = 10  # seconds\nworkers = 2\n')
    settings = be.server_settings(["/v/bin/gunicorn", "-c", str(conf), "app:app"], {}, be_read)
    assert (settings["worker_kind"], settings["timeout"]) == ("sync", "10")
    assert settings["timeout_from"] == f"config file {conf}"
    settings = be.server_settings(
        ["/v/bin/gunicorn", "-c", str(conf), "-k", "gevent", "app:app"], {}, be_read
    )
    assert settings["worker_kind"] == "async" and settings["worker_class_from"] == "command line"
    # the default gunicorn.conf.py in the working directory counts too
    settings = be.server_settings(["/v/bin/gunicorn", "app:app"], {}, be_read, str(tmp_path))
    assert settings["timeout"] == "10"


def test_unreadable_config_file_is_noted():
    settings = be.server_settings(
        ["/v/bin/gunicorn", "-c", "/nonexistent.py", "app:app"], {}, be_read
    )
    assert settings["config_unreadable"] is True


def be_read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def test_other_servers_and_non_servers():
    assert (
        be.server_settings(["/v/bin/uvicorn", "app:app", "--port", "8000"])["server"] == "uvicorn"
    )
    assert be.server_settings(["/usr/sbin/cron", "-f"]) is None


# --- discovery --------------------------------------------------------------------------------

USER = {"user": "sse", "uid": 997, "lingering": True, "bus": True}


def test_discovery_finds_servers_in_system_and_user_managers():
    fake = FakeSystem(
        system={
            "cron.service": {
                "Id": "cron.service",
                "LoadState": "loaded",
                "ExecStart": exec_start("/usr/sbin/cron -f"),
            },
            "api.service": {
                "Id": "api.service",
                "LoadState": "loaded",
                "ExecStart": exec_start("/srv/venv/bin/gunicorn app:app"),
            },
        },
        users={
            "sse": {
                "sse-backend.service": {
                    "Id": "sse-backend.service",
                    "LoadState": "loaded",
                    "ExecStart": PROJECT_EXEC,
                }
            }
        },
    )
    found, findings = bu.discover_units(fake, "", [USER])
    assert [(u["label"], u["props"]["Id"]) for u in found] == [
        ("system", "api.service"),
        ("user sse", "sse-backend.service"),
    ]
    assert findings == []
    user_call = next(c for c in fake.calls if c[0] == "runuser")
    assert user_call[:6] == ["runuser", "-u", "sse", "--", "env", "XDG_RUNTIME_DIR=/run/user/997"]


def test_discovery_by_name_and_missing_user_manager():
    fake = FakeSystem(
        system={},
        users={
            "sse": {"sse-backend.service": {"Id": "sse-backend.service", "LoadState": "loaded"}}
        },
    )
    found, findings = bu.discover_units(
        fake, "sse-backend", [USER, {"user": "old", "uid": 998, "lingering": True, "bus": False}]
    )
    assert [u["props"]["Id"] for u in found] == ["sse-backend.service"]
    assert findings[0]["id"] == "backend.user_manager" and "old" in findings[0]["message"]


# --- one unit -------------------------------------------------------------------------------


def procs_with(*entries: dict) -> be.ProcessTable:
    table = be.ProcessTable(proc="/nonexistent")
    table.procs = {p["pid"]: p for p in entries}
    return table


def release(tmp_path: Path, written: float) -> tuple[Path, list[str]]:
    """A release folder like the sse_backend role's, its code written at ``written``."""
    rel = tmp_path / "releases" / "1.0.0"
    site = rel / "venv" / "lib" / "python3.11" / "site-packages" / "app"
    site.mkdir(parents=True)
    (site / "main.py").write_text("x = 1\n")
    (rel / "venv" / "bin").mkdir()
    (rel / ".installed").write_text("wheelhouse\n")
    cache = site / "__pycache__"
    cache.mkdir()
    (cache / "main.cpython-311.pyc").write_text("runtime file")
    for path in [site / "main.py", rel / ".installed"]:
        os.utime(path, (written, written))
    os.utime(cache / "main.cpython-311.pyc", (written + 500, written + 500))  # never counts
    current = tmp_path / "current"
    current.symlink_to(rel)
    return current, [
        str(current / "venv" / "bin" / "gunicorn"),
        "-k",
        "uvicorn_worker.UvicornWorker",
        "app:app",
    ]


def unit(tmp_path: Path, current: Path, argv: list[str], **props: str) -> dict:
    fragment = tmp_path / "sse-backend.service"
    fragment.write_text("[Unit]\nDescription=x\n\n[Service]\nExecStart=" + " ".join(argv) + "\n")
    base = {
        "Id": "sse-backend.service",
        "LoadState": "loaded",
        "ActiveState": "active",
        "SubState": "running",
        "Result": "success",
        "MainPID": "100",
        "WorkingDirectory": str(current),
        "FragmentPath": str(fragment),
        "ExecStart": exec_start(" ".join(argv)),
        "NRestarts": "0",
        "TriggeredBy": "",
    }
    base.update(props)
    return {
        "scope": {"scope": "user", "user": "sse", "uid": 997},
        "label": "user sse",
        "props": base,
    }


def ids(findings: list[dict]) -> dict[str, dict]:
    return {f["id"]: f for f in findings}


def test_fresh_process_has_no_stale_finding(tmp_path):
    now = time.time()
    current, argv = release(tmp_path, now - 100)
    fake = FakeSystem(system={})
    procs = procs_with(
        {"pid": 100, "ppid": 1, "start": now - 50, "cmdline": argv},
        {"pid": 101, "ppid": 100, "start": now - 49, "cmdline": argv},
    )
    state, findings = bu.analyze_unit(
        fake, unit(tmp_path, current, argv), procs, now - 3600, be_read
    )
    assert "backend.stale_code" not in ids(findings)
    assert state["code_written"]["path"].endswith(("main.py", ".installed"))
    assert [w["pid"] for w in state["workers"]] == [101]
    assert state["server"]["worker_kind"] == "async"
    assert state["exec_start_where"].endswith("sse-backend.service:5")


def test_code_written_after_start_is_stale(tmp_path):
    now = time.time()
    current, argv = release(tmp_path, now - 10)
    procs = procs_with({"pid": 100, "ppid": 1, "start": now - 50, "cmdline": argv})
    _, findings = bu.analyze_unit(
        FakeSystem(system={}), unit(tmp_path, current, argv), procs, now - 3600, be_read
    )
    stale = ids(findings)["backend.stale_code"]
    assert stale["severity"] == "critical"
    assert "PID 100" in stale["message"] and "restart" in stale["message"]


def test_inactive_unit_is_down_with_its_socket(tmp_path):
    now = time.time()
    current, argv = release(tmp_path, now - 100)

    class Sockets(FakeSystem):
        def __call__(self, argv_):
            if "Listen" in argv_:
                return (
                    0,
                    "Id=sse-backend.socket\nActiveState=inactive\nListen=127.0.0.1:8000 (Stream)\n",
                    "",
                )
            return super().__call__(argv_)

    u = unit(
        tmp_path,
        current,
        argv,
        ActiveState="inactive",
        SubState="dead",
        MainPID="0",
        TriggeredBy="sse-backend.socket",
    )
    state, findings = bu.analyze_unit(Sockets(system={}), u, procs_with(), now - 3600, be_read)
    down = ids(findings)["backend.unit_inactive"]
    assert down["severity"] == "critical"
    assert "sse-backend.socket is inactive" in down["message"]
    assert state["sockets"][0]["listen"] == ["127.0.0.1:8000"]


def test_inactive_service_behind_listening_socket_is_not_down(tmp_path):
    now = time.time()
    current, argv = release(tmp_path, now - 100)

    class Sockets(FakeSystem):
        def __call__(self, argv_):
            if "Listen" in argv_:
                return (
                    0,
                    "Id=sse-backend.socket\nActiveState=active\nListen=127.0.0.1:8000 (Stream)\n",
                    "",
                )
            return super().__call__(argv_)

    u = unit(
        tmp_path,
        current,
        argv,
        ActiveState="inactive",
        MainPID="0",
        TriggeredBy="sse-backend.socket",
    )
    _, findings = bu.analyze_unit(Sockets(system={}), u, procs_with(), now - 3600, be_read)
    assert "backend.unit_inactive" not in ids(findings)
    assert ids(findings)["backend.unit_socket_only"]["severity"] == "warning"


def test_sync_worker_with_short_timeout_is_critical_and_journal_counts_timeouts(tmp_path):
    now = time.time()
    argv_text = "/srv/venv/bin/gunicorn -k sync --timeout 5 app:app"
    current, _ = release(tmp_path, now - 100)
    journal = [
        {
            "MESSAGE": "[2026-11-28 05:00:00 +0000] [7] [CRITICAL] WORKER TIMEOUT (pid:8)",
            "PRIORITY": "6",
            "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
        },
        {
            "MESSAGE": "TypeError: __call__() missing 1 required positional argument: 'send'",
            "PRIORITY": "6",
            "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
        },
        {
            "MESSAGE": "127.0.0.1 - GET /version 200",
            "PRIORITY": "6",
            "__REALTIME_TIMESTAMP": str(int(now * 1e6)),
        },
    ]
    u = unit(tmp_path, current, argv_text.split())
    procs = procs_with({"pid": 100, "ppid": 1, "start": now - 50, "cmdline": argv_text.split()})
    state, findings = bu.analyze_unit(
        FakeSystem(system={}, journal=journal), u, procs, now - 3600, be_read
    )
    sync = ids(findings)["backend.sync_worker"]
    assert sync["severity"] == "critical" and sync["timeout"] == 5
    assert "--timeout 5" in sync["message"] and sync["where"].endswith(":5")
    assert state["journal"]["errors"] == 2 and state["journal"]["worker_timeouts"] == 1
    assert "1 of them WORKER TIMEOUT" in ids(findings)["backend.journal_errors"]["message"]


def test_unreadable_journal_is_a_finding(tmp_path):
    now = time.time()
    current, argv = release(tmp_path, now - 100)

    def run(argv_):
        if argv_[0] == "journalctl":
            return 127, "", "No such file or directory: journalctl"
        return 0, "", ""

    procs = procs_with({"pid": 100, "ppid": 1, "start": now - 50, "cmdline": argv})
    _, findings = bu.analyze_unit(run, unit(tmp_path, current, argv), procs, now - 3600, be_read)
    assert ids(findings)["backend.journal"]["severity"] == "info"


def test_real_process_table_sees_this_process():
    table = be.ProcessTable()
    me = table.get(os.getpid())
    assert me is not None and abs(me["start"] - time.time()) < 24 * 3600
    assert me["ppid"] == os.getppid()


# --- issue 21: precise start times, HUP reloads, the app's own error -------------------------


def fake_proc(tmp_path: Path, btime: int, procs: dict[int, tuple[int, int, str]]) -> str:
    """A /proc with /proc/stat's btime and <pid>/stat (ppid, start ticks) and cmdline."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text(f"cpu 1 2 3\nbtime {btime}\nprocesses 9\n")
    for pid, (ppid, ticks, cmd) in procs.items():
        (proc / str(pid)).mkdir()
        rest = " ".join(["S", str(ppid)] + ["0"] * 17 + [str(ticks)] + ["0"] * 20)
        (proc / str(pid) / "stat").write_text(f"{pid} (gunicorn: x) {rest}\n")
        (proc / str(pid) / "cmdline").write_bytes(cmd.replace(" ", "\0").encode() + b"\0")
    return str(proc)


def test_start_times_use_the_boot_clock_not_whole_second_btime(tmp_path):
    """Booted at 1000.9 (btime says 1000): a process 50.25 s after boot started at 1051.15;
    btime + ticks made it 1050.25, early enough for a false 'changed after start'."""
    now_real, now_boot = 2000.9, 1000.0  # CLOCK_REALTIME, CLOCK_BOOTTIME at the same moment
    proc = fake_proc(tmp_path, 1000, {100: (1, 5025, "/v/bin/gunicorn app:app")})
    table = be.ProcessTable(proc=proc, clocks=lambda: (now_real, now_boot), ticks=100)
    assert table.get(100)["start"] == pytest.approx(1051.15, abs=1e-6)
    assert table.clock["precision_s"] == 0.01 and "truncated" in table.clock["rounding"]
    assert table.after_start(1051.2, table.get(100))  # 50 ms later: surely after
    assert not table.after_start(1051.155, table.get(100))  # within the tick: not surely
    # without CLOCK_BOOTTIME: btime, and a precision that says so
    table = be.ProcessTable(proc=proc, clocks=None, ticks=100)
    assert table.get(100)["start"] == pytest.approx(1050.25)
    assert table.clock["precision_s"] > 1


def test_environment_written_just_before_a_start_is_not_stale(tmp_path):
    """The deploy writes the environment file, then restarts: 0.3 s apart, no warning."""
    now = time.time()
    current, argv = release(tmp_path, now - 100)
    env = tmp_path / "env"
    env.write_text("SSE_RETRY_MS=1000\n")
    os.utime(env, (now - 20.3, now - 20.3))
    boot = now - 5000.7  # a boot time with a fraction, as every real one has
    ticks = round((now - 20 - boot) * 100)
    proc = fake_proc(tmp_path, int(boot), {100: (1, ticks, " ".join(argv))})
    table = be.ProcessTable(proc=proc, clocks=lambda: (now, now - boot), ticks=100)
    u = unit(tmp_path, current, argv, EnvironmentFiles=f"{env} (ignore_errors=no)")
    _, findings = bu.analyze_unit(FakeSystem(system={}), u, table, now - 3600, be_read)
    assert "backend.stale_environment" not in ids(findings)


def test_hup_reload_new_workers_run_the_new_code(tmp_path):
    """Code written, then Gunicorn reloaded with HUP: same master, new workers."""
    now = time.time()
    current, argv = release(tmp_path, now - 30)
    procs = procs_with(
        {"pid": 100, "ppid": 1, "start": now - 500, "cmdline": argv},
        {"pid": 101, "ppid": 100, "start": now - 20, "cmdline": argv},
    )
    state, findings = bu.analyze_unit(
        FakeSystem(system={}), unit(tmp_path, current, argv), procs, now - 3600, be_read
    )
    assert "backend.stale_code" not in ids(findings)
    assert state["code_runners"] == [101]
    # with --preload the master imported the app: a HUP does not load new code
    preload = [*argv[:-1], "--preload", argv[-1]]
    procs.procs[100]["cmdline"] = preload
    _, findings = bu.analyze_unit(
        FakeSystem(system={}), unit(tmp_path, current, preload), procs, now - 3600, be_read
    )
    assert "main process (PID 100)" in ids(findings)["backend.stale_code"]["message"]


def test_failed_start_quotes_the_apps_own_error(tmp_path):
    """A user unit that fails to boot: the app's exception line, not systemd's lines."""
    now = time.time()
    current, argv = release(tmp_path, now - 100)
    stamp = str(int(now * 1e6))
    app = {
        "_SYSTEMD_USER_UNIT": "sse-backend.service",
        "_PID": "4242",
        "__REALTIME_TIMESTAMP": stamp,
    }
    manager = {"USER_UNIT": "sse-backend.service", "_PID": "900", "__REALTIME_TIMESTAMP": stamp}
    journal = [
        {**app, "MESSAGE": "[2026-12-02 07:00:00 +0000] [7] [ERROR] Exception in worker process"},
        {**app, "MESSAGE": "Traceback (most recent call last):"},
        {**app, "MESSAGE": "ValueError: SSE_RETRY_MS must be an integer, got 'abc'"},
        {
            **app,
            "MESSAGE": "[2026-12-02 07:00:00 +0000] [6] [ERROR] Reason: Worker failed to boot.",
        },
        {
            **manager,
            "MESSAGE": "sse-backend.service: Main process exited, code=exited, status=3/n",
        },
        {**manager, "MESSAGE": "sse-backend.service: Failed with result 'exit-code'."},
        {**manager, "MESSAGE": "Failed to start sse-backend.service - sse-backend SSE backend."},
    ]
    u = unit(tmp_path, current, argv, ActiveState="failed", SubState="failed", MainPID="0")
    state, findings = bu.analyze_unit(
        FakeSystem(system={}, journal=journal), u, procs_with(), now - 3600, be_read
    )
    down = ids(findings)["backend.unit_inactive"]
    assert "ValueError: SSE_RETRY_MS must be an integer, got 'abc'" in down["message"]
    assert down["app_error"]["message"].startswith("ValueError")
    assert state["journal"]["app_error"] == down["app_error"]
