#!/usr/bin/env python3
"""One measurement inside the bench container: `sseprobe load` plus a /proc sampler.

    runner.py --stop-file F -- <sseprobe load arguments>

Samples once a second, from 1 s before the load starts to 2 s after it ends, the memory
(VmRSS and Pss), descriptors, CPU time and process count of each group of processes
(nginx, naive_nginx, backend, naive_backend, probe, broker), each nginx worker's descriptors and
whether it is an old worker still shutting down, and the kernel's listen-queue overflow
counters. When the stop file appears the load
gets SIGINT (it ends the hold early and still reports). Prints one JSON object:
{"load": <sseprobe load --json>, "samples": [...], "clock": "monotonic"}. Standard
library only (runs on the container's python3); times are CLOCK_MONOTONIC seconds, the
clock `load` reports its start on (``t0_monotonic``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
# bench.py copies the probe's package beside this file (its folder layout, no __init__.py);
# `python3 -m` from HERE runs it on the container's bare python3, no venv.
PROBE_MODULE = "ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli"
TICKS = os.sysconf("SC_CLK_TCK")
NAIVE_NGINX_CONF = "/opt/sse-naive/nginx.conf"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _kb(text: str | None, key: str) -> int:
    if not text:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _processes() -> dict[int, dict[str, Any]]:
    procs: dict[int, dict[str, Any]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _read(f"/proc/{pid}/stat")
        raw = _read(f"/proc/{pid}/cmdline")
        if not stat or raw is None:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        procs[pid] = {
            "comm": comm,
            "ppid": int(fields[1]),
            "cpu_ticks": int(fields[11]) + int(fields[12]),
            "cmdline": raw.replace("\0", " ").strip(),
            "argv": raw.rstrip("\0").split("\0"),
        }
    return procs


def _group(pid: int, procs: dict[int, dict[str, Any]]) -> str | None:
    """nginx masters/workers (not `nginx -t`), Gunicorn (not pip installing it), the probe."""
    p = procs[pid]
    cmd, argv = p["cmdline"], p["argv"]
    if p["comm"] == "nginx" and cmd.startswith("nginx: "):
        master = pid if "master process" in cmd else p["ppid"]
        master_cmd = procs.get(master, {}).get("cmdline", "")
        return "naive_nginx" if NAIVE_NGINX_CONF in master_cmd else "nginx"
    if any(a.endswith("/gunicorn") for a in argv[:2]):
        if "sse_app.main:app" in argv:
            return "backend"
        if "naive_app:app" in argv:
            return "naive_backend"
    if PROBE_MODULE in argv[:3] and "load" in argv:
        return "probe"
    if p["comm"] in ("redis-server", "valkey-server"):
        return "broker"
    return None


def _tcp_counters() -> dict[str, int]:
    """The kernel's listen-queue counters (this network namespace)."""
    text = _read("/proc/net/netstat") or ""
    lines = text.splitlines()
    out: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            for name, value in zip(names.split()[1:], values.split()[1:]):
                if name in ("ListenOverflows", "ListenDrops"):
                    out[name] = int(value)
    return out


def sample() -> dict[str, Any]:
    at = time.monotonic()
    procs = _processes()
    groups: dict[str, dict[str, int]] = {}
    workers = []
    for pid in procs:
        group = _group(pid, procs)
        if group is None:
            continue
        status = _read(f"/proc/{pid}/status")
        rollup = _read(f"/proc/{pid}/smaps_rollup")
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = 0
        g = groups.setdefault(
            group,
            {
                "procs": 0,
                "rss_kb": 0,
                "pss_kb": 0,
                "pss_unreadable": 0,
                "fds": 0,
                "cpu_ticks": 0,
                "pids": [],
            },
        )
        g["procs"] += 1
        g["pids"].append(pid)
        g["rss_kb"] += _kb(status, "VmRSS")
        g["pss_kb"] += _kb(rollup, "Pss")
        g["pss_unreadable"] += rollup is None
        g["fds"] += fds
        g["cpu_ticks"] += procs[pid]["cpu_ticks"]
        if group == "nginx" and "worker process" in procs[pid]["cmdline"]:
            workers.append(
                {
                    "pid": pid,
                    "fds": fds,
                    "shutting_down": "shutting down" in procs[pid]["cmdline"],
                }
            )
    for g in groups.values():
        g["cpu_s"] = round(g.pop("cpu_ticks") / TICKS, 2)
    return {"t": round(at, 3), "groups": groups, "nginx_workers": workers, "tcp": _tcp_counters()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("load_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    load_args = [a for a in args.load_args if a != "--"]
    samples: list[dict[str, Any]] = []
    done = threading.Event()

    def sampler() -> None:
        next_at = time.monotonic()
        while True:
            samples.append(sample())
            next_at += 1.0
            if done.wait(max(0.0, next_at - time.monotonic())):
                return

    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.stop_file)
    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    time.sleep(1.2)  # idle figures first
    proc = subprocess.Popen(
        [sys.executable, "-m", PROBE_MODULE, "load", *load_args, "--json"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    stopped = False
    while proc.poll() is None:
        if not stopped and os.path.exists(args.stop_file):
            proc.send_signal(signal.SIGINT)
            stopped = True
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    time.sleep(2.2)  # after the load: what is released, which old workers are left
    done.set()
    thread.join(5)
    try:
        result = json.loads(out)
    except ValueError:
        result = {"error": f"sseprobe load exited {proc.returncode}", "output": out[-2000:]}
    result["exit_status"] = proc.returncode
    print(json.dumps({"load": result, "samples": samples, "clock": "monotonic"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
