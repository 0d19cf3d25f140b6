"""Prove that an nginx reload took effect (standard library only; shipped to targets).

`systemctl reload nginx` (and `nginx -s reload`) only sends SIGHUP: it exits 0 even when
the master then fails to apply the new configuration, e.g. a new `listen` whose port is
taken (`nginx -t` does not bind ports, so it passed). The master then logs `[emerg]` to
its error log and keeps the old workers serving the old configuration.

So a reload counts as live only when, after the signal, a new generation of workers runs
and no worker from before still takes connections (an old worker renames itself "worker
process is shutting down" as it closes its listening sockets); it counts as failed as
soon as an `[emerg]` or `[alert]` line appears in the error log after the signal.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

WORKER = "nginx: worker process"
_FAILURE = re.compile(r"\[(emerg|alert)\]")


@dataclass
class ReloadResult:
    live: bool
    cause: str = ""
    waited_s: float = 0.0
    workers_before: list[int] = field(default_factory=list)
    workers_after: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "live": self.live,
            "cause": self.cause,
            "waited_s": round(self.waited_s, 3),
            "workers_before": self.workers_before,
            "workers_after": self.workers_after,
        }


def nginx_processes(proc: str = "/proc", pid_file: str = "/run/nginx.pid") -> dict[int, str]:
    """pid -> command line of the nginx processes (titles, e.g. "nginx: worker process").

    Only the master in ``pid_file`` and its children when that file names one: another
    nginx on the host (a second instance, a test's) must not count as "before" workers
    forever. Without the file: every nginx process.
    """
    master = _master_pid(pid_file)
    found: dict[int, str] = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            if not title.startswith("nginx:"):
                continue
            if master is not None and int(entry) != master and _parent(proc, entry) != master:
                continue
        except OSError:
            continue  # the process ended meanwhile
        found[int(entry)] = title
    return found


def _master_pid(pid_file: str) -> int | None:
    try:
        with open(pid_file, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _parent(proc: str, pid: str) -> int:
    with open(os.path.join(proc, pid, "stat"), encoding="utf-8", errors="replace") as handle:
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def accepting_workers(processes: dict[int, str]) -> set[int]:
    """Workers that take new connections (not the ones shutting down)."""
    return {pid for pid, title in processes.items() if title == WORKER}


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def failures_since(path: str, offset: int) -> list[str]:
    """[emerg]/[alert] lines written to the error log after offset (a rotated log: all)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < offset:
                offset = 0  # rotated meanwhile
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if _FAILURE.search(line)]


def cause_of(lines: list[str]) -> str:
    """The message of the first failure line, without nginx's timestamp and pid prefix."""
    first = lines[0]
    match = re.search(r"\[(?:emerg|alert)\] [0-9#]+: (?:\*[0-9]+ )?(.*)", first)
    return match.group(1) if match else first


def reload_and_prove(
    reload: Callable[[], tuple[int, str]],
    error_log: str,
    timeout: float,
    processes: Callable[[], dict[int, str]] = nginx_processes,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReloadResult:
    """Send the reload, then wait for the new generation or a failure in the error log."""
    before = accepting_workers(processes())
    offset = log_size(error_log)
    started = clock()
    rc, output = reload()
    if rc != 0:
        return ReloadResult(False, f"the reload command failed (rc={rc}): {output.strip()}")
    result = ReloadResult(False, workers_before=sorted(before))
    while True:
        failed = failures_since(error_log, offset)
        now = accepting_workers(processes())
        result.waited_s = clock() - started
        result.workers_after = sorted(now)
        if failed:
            result.cause = cause_of(failed)
            return result
        if now and not now & before:
            result.live = True
            return result
        if result.waited_s >= timeout:
            result.cause = (
                f"no new nginx workers within {timeout:g} s of the reload and no error in"
                f" {error_log}; workers before {sorted(before)}, now {sorted(now)}"
            )
            return result
        sleep(0.1)
