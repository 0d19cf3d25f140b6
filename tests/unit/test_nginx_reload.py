"""reload_and_prove: a reload is live only with a new worker generation and no [emerg]."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.sse.stack.plugins.module_utils.nginx_reload import (
    cause_of,
    failures_since,
    nginx_processes,
    reload_and_prove,
)

MASTER = "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"
WORKER = "nginx: worker process"
LEAVING = "nginx: worker process is shutting down"
BIND = (
    "2026/12/02 07:40:01 [emerg] 812#812: bind() to 0.0.0.0:8081 failed"
    " (98: Address already in use)\n"
)


class FakeHost:
    """Process tables in turn (one per look) and an error log that may grow on reload."""

    def __init__(self, tables: list[dict[int, str]], log: Path, on_reload: str = "") -> None:
        self.tables = tables
        self.log = log
        self.on_reload = on_reload
        self.now = 0.0

    def processes(self) -> dict[int, str]:
        return self.tables.pop(0) if len(self.tables) > 1 else self.tables[0]

    def reload(self) -> tuple[int, str]:
        with self.log.open("a") as handle:
            handle.write(self.on_reload)
        return 0, ""

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(host: FakeHost, timeout: float = 5.0):
    return reload_and_prove(
        host.reload, str(host.log), timeout, host.processes, host.clock, host.sleep
    )


def test_new_generation_is_live(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("2026/12/02 07:00:00 [notice] 1#1: signal process started\n")
    old = {1: MASTER, 10: WORKER, 11: WORKER}
    halfway = {1: MASTER, 10: LEAVING, 11: WORKER, 20: WORKER}  # 11 still takes connections
    done = {1: MASTER, 10: LEAVING, 11: LEAVING, 20: WORKER, 21: WORKER}
    host = FakeHost([old, old, halfway, done], log)
    result = run(host)
    assert result.live and result.cause == ""
    assert result.workers_before == [10, 11] and result.workers_after == [20, 21]


def test_bind_failure_in_the_error_log_fails_naming_nginx_cause(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("2026/12/02 06:00:00 [emerg] 5#5: an old failure, before this reload\n")
    old = {1: MASTER, 10: WORKER}
    result = run(FakeHost([old], log, on_reload=BIND))
    assert not result.live
    assert result.cause == "bind() to 0.0.0.0:8081 failed (98: Address already in use)"


def test_no_new_workers_and_no_error_times_out(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    old = {1: MASTER, 10: WORKER}
    result = run(FakeHost([old], log), timeout=1.0)
    assert not result.live and "no new nginx workers within 1 s" in result.cause
    assert result.waited_s >= 1.0


def test_failed_reload_command(tmp_path: Path) -> None:
    result = reload_and_prove(lambda: (1, "nginx.service is not active"), str(tmp_path / "x"), 1)
    assert not result.live and "rc=1" in result.cause and "not active" in result.cause


def test_a_rotated_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(BIND)
    assert failures_since(str(log), offset=10_000) == [BIND.strip()]
    assert cause_of([BIND.strip()]).startswith("bind() to 0.0.0.0:8081")


def test_nginx_processes_reads_titles(tmp_path: Path) -> None:
    for pid, title in ((7, b"nginx: worker process\0"), (8, b"sshd: deploy\0"), (9, b"")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(title)
    (tmp_path / "self").mkdir()
    assert nginx_processes(str(tmp_path), str(tmp_path / "no.pid")) == {7: WORKER}


def test_nginx_processes_of_another_master_do_not_count(tmp_path: Path) -> None:
    """A second nginx on the host (its own master) is not this reload's."""
    procs = {
        10: (b"nginx: master process /usr/sbin/nginx\0", 1),
        11: (WORKER.encode() + b"\0", 10),
        20: (b"nginx: master process nginx -c /etc/naive.conf\0", 1),
        21: (WORKER.encode() + b"\0", 20),
    }
    for pid, (title, ppid) in procs.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(title)
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (nginx: a) b) S {ppid} {pid} 0\n")
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text("10\n")
    assert sorted(nginx_processes(str(tmp_path), str(pid_file))) == [10, 11]
    # without a pid file: every nginx, as before
    assert sorted(nginx_processes(str(tmp_path), str(tmp_path / "none"))) == [10, 11, 20, 21]
