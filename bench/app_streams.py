#!/usr/bin/env python3
"""The reference app's own cost per open stream and its keepalive lateness (issue 20).

    python bench/app_streams.py [--streams 2000] [--hold 30] [--ramp 10] [--keepalive 1]
                                [--variant NAME=REF ...] [--rounds 1]

For each variant (REF: a git commit/branch whose ``app/src`` is served, or ``worktree`` for
this tree's) it starts the app alone under Uvicorn (h11, as the deployed
UvicornH11Worker) on 127.0.0.1 in a subprocess, opens N streams with the project's load
generator (``sseprobe load``, a second subprocess, publishing one event a second so the
fan-out and the loss count are exercised too; every 5 s by default, so most writes are
keepalives), holds them, and reports:

* PSS growth per stream: (median of the app's Pss in /proc/PID/smaps_rollup during the
  steady hold - median while idle before the load) / streams open at the end, in KB;
* keepalive lateness p50 / p99 / max (the generator's: gap since the stream's previous
  bytes minus the interval, over the whole run); with a short interval (1-2 s) N streams
  mean N/interval keepalive writes a second, the stress issue 20 is about;
* CPU of the app and of the generator during the steady hold (% of one core), and the
  host's load average at the start and end of each run (the machine is shared).

Variants of one invocation run one after the other in the same conditions; ``--rounds``
interleaves them (A B A B) and the report gives medians over rounds. Bounded: every run
lasts ramp + hold + about 10 s; loopback only. Standard library + the dev venv
(uvicorn, the app's dependencies). Writes bench/results/app_streams.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / "collections"
PROBE = "ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli"
TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-app-streams"
SAMPLE_S = 0.5
SETTLE_S = 3.0  # after the ramp, before the steady window starts
IDLE_SAMPLES = 6


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def pss_kb(pid: int) -> int | None:
    text = _read(f"/proc/{pid}/smaps_rollup")
    for line in (text or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def cpu_s(pid: int) -> float | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def loadavg() -> list[float]:
    text = _read("/proc/loadavg") or "0 0 0"
    return [float(v) for v in text.split()[:3]]


def source_tree(ref: str, scratch: Path) -> Path:
    """The ``app/src`` folder to serve: this tree's, or one exported from git."""
    if ref == "worktree":
        return ROOT / "app" / "src"
    dest = scratch / ref.replace("/", "_")
    if not dest.exists():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "app/src"],
            check=True,
            capture_output=True,
        ).stdout
        dest.mkdir(parents=True)
        with tempfile.TemporaryFile() as fh:
            fh.write(archive)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as tar:
                tar.extractall(dest, filter="data")
    return dest / "app" / "src"


class Sampler(threading.Thread):
    """Samples the app's Pss and CPU and the generator's CPU every SAMPLE_S."""

    def __init__(self, app_pid: int) -> None:
        super().__init__(daemon=True)
        self.app_pid = app_pid
        self.gen_pid: int | None = None
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            gen = self.gen_pid
            self.samples.append(
                {
                    "t": time.monotonic(),
                    "pss_kb": pss_kb(self.app_pid),
                    "app_cpu_s": cpu_s(self.app_pid),
                    "gen_cpu_s": cpu_s(gen) if gen else None,
                }
            )
            self.stop.wait(SAMPLE_S)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start (exit {proc.poll()})")
        time.sleep(0.1)


def _warm_up(port: int) -> None:
    """One stream and one publish, so lazy imports and first-use caches are in the idle Pss."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /notify/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        got = b""
        while b"retry:" not in got:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    body = json.dumps({"data": "warm-up"}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/notify/publish",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5):
        pass


def _at(samples: list[dict[str, Any]], t: float, key: str) -> float | None:
    """The sample value nearest to time ``t``."""
    usable = [s for s in samples if s[key] is not None]
    if not usable:
        return None
    return min(usable, key=lambda s: abs(s["t"] - t))[key]


def _cpu_pct(samples: list[dict[str, Any]], start: float, end: float, key: str) -> float | None:
    a, b = _at(samples, start, key), _at(samples, end, key)
    if a is None or b is None or end <= start:
        return None
    return round(100.0 * (b - a) / (end - start), 1)


def run_one(name: str, src: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSE_", "LISTEN_"))}
    env.update(
        PYTHONPATH=str(src),
        SSE_KEEPALIVE_INTERVAL=str(args.keepalive),
        SSE_PUBLISH_TOKEN=TOKEN,
        SSE_RETRY_MS="2000",
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    app = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "sse_app.main:app",
            "--fd", str(listener.fileno()), "--http", args.http,
            "--no-access-log", "--log-level", "warning", "--backlog", "4096",
        ],
        env=env,
        pass_fds=(listener.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    listener.close()
    sampler = Sampler(app.pid)
    result: dict[str, Any] = {"variant": name, "src": str(src)}
    try:
        _wait_ready(port, app)
        _warm_up(port)
        time.sleep(1.0)
        sampler.start()
        time.sleep(SAMPLE_S * IDLE_SAMPLES)
        result["loadavg_start"] = loadavg()
        url = f"http://127.0.0.1:{port}/notify/events"
        gen_env = dict(os.environ, PYTHONPATH=str(COLLECTIONS), SSEPROBE_PUBLISH_TOKEN=TOKEN)
        gen = subprocess.Popen(
            [
                sys.executable, "-m", PROBE, "load", url,
                "--streams", str(args.streams), "--hold", str(args.hold),
                "--ramp", str(args.ramp), "--keepalive-interval", str(args.keepalive),
                "--first-byte-timeout", "10",
                "--publish-url", f"http://127.0.0.1:{port}/notify/publish",
                "--publish-interval", str(args.publish_interval),
                "--json",
            ],
            env=gen_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        sampler.gen_pid = gen.pid
        out, err = gen.communicate(timeout=args.ramp + args.hold + 60)
        result["loadavg_end"] = loadavg()
        if not out.strip():
            raise RuntimeError(f"the load generator printed nothing: {err.decode()[-2000:]}")
        load = json.loads(out)
    finally:
        sampler.stop.set()
        if sampler.is_alive():
            sampler.join()
        app.send_signal(signal.SIGTERM)
        try:
            _, app_err = app.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
            _, app_err = app.communicate()
        result["app_stderr_tail"] = app_err.decode(errors="replace")[-1500:]

    t0 = load["t0_monotonic"]
    steady = (t0 + args.ramp + SETTLE_S, t0 + args.ramp + args.hold - 1.0)
    samples = sampler.samples
    idle = [s["pss_kb"] for s in samples if s["t"] < t0 and s["pss_kb"] is not None]
    held = [
        s["pss_kb"] for s in samples if steady[0] <= s["t"] <= steady[1] and s["pss_kb"] is not None
    ]
    open_end = load["open_at_end"]
    idle_kb = statistics.median(idle) if idle else None
    held_kb = statistics.median(held) if held else None
    per_stream = (
        round((held_kb - idle_kb) / open_end, 2)
        if idle_kb is not None and held_kb is not None and open_end
        else None
    )
    lateness = load["keepalive_lateness_ms"]
    result.update(
        streams=args.streams,
        opened=load["opened"],
        open_at_end=open_end,
        drops=load["drops"],
        events=load["events"],
        events_lost=load["events_lost"],
        attempt_failures=load["attempt_failures"],
        first_byte_ms=load["first_byte_ms"],
        keepalives=load["keepalives"],
        keepalives_bunched=load["keepalives_bunched"],
        lateness_ms={k: lateness[k] for k in ("n", "p50", "p99", "max")},
        idle_pss_kb=idle_kb,
        held_pss_kb=held_kb,
        pss_kb_per_stream=per_stream,
        pss_samples={"idle": len(idle), "held": len(held)},
        steady_window_s=round(steady[1] - steady[0], 1),
        app_cpu_pct=_cpu_pct(samples, *steady, "app_cpu_s"),
        # CPU time per message written over the whole load: fair under a starved host,
        # where a late app writes fewer keepalives and so burns less CPU a second
        app_cpu_us_per_message=_per_message(samples, t0, t0 + load["elapsed_s"], load),
        gen_cpu_pct=_cpu_pct(samples, *steady, "gen_cpu_s"),
        ok=load["ok"],
    )
    return result


def _per_message(
    samples: list[dict[str, Any]], start: float, end: float, load: dict[str, Any]
) -> float | None:
    a, b = _at(samples, start, "app_cpu_s"), _at(samples, end, "app_cpu_s")
    messages = load["keepalives"] + load["events"]
    if a is None or b is None or not messages:
        return None
    return round(1e6 * (b - a) / messages, 1)


def _median(runs: list[dict[str, Any]], get: Any) -> float | None:
    values = [v for v in (get(r) for r in runs) if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarise(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        mine = [r for r in runs if r["variant"] == name]
        rows.append(
            {
                "variant": name,
                "rounds": len(mine),
                "pss_kb_per_stream": _median(mine, lambda r: r["pss_kb_per_stream"]),
                "lateness_p50_ms": _median(mine, lambda r: r["lateness_ms"]["p50"]),
                "lateness_p99_ms": _median(mine, lambda r: r["lateness_ms"]["p99"]),
                "lateness_max_ms": _median(mine, lambda r: r["lateness_ms"]["max"]),
                "app_cpu_pct": _median(mine, lambda r: r["app_cpu_pct"]),
                "app_cpu_us_per_message": _median(mine, lambda r: r["app_cpu_us_per_message"]),
                "keepalives": _median(mine, lambda r: r["keepalives"]),
                "gen_cpu_pct": _median(mine, lambda r: r["gen_cpu_pct"]),
                "open_at_end": min(r["open_at_end"] for r in mine),
                "events_lost": max(r["events_lost"] for r in mine),
                "loadavg": [r["loadavg_start"][0] for r in mine] + [mine[-1]["loadavg_end"][0]],
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        "# The reference app alone: memory per stream, keepalive lateness, CPU",
        "",
        f"Generated by `python bench/app_streams.py` ({report['generated']}); raw figures in"
        " `app_streams.json`. The app runs under Uvicorn"
        f" (`--http {cfg['http']}`, one process) on 127.0.0.1; {cfg['streams']:,} streams"
        f" opened by `sseprobe load` over {cfg['ramp']:g} s and held {cfg['hold']:g} s,"
        f" a keepalive every {cfg['keepalive']:g} s (so {cfg['streams'] / cfg['keepalive']:,.0f}"
        f" keepalive writes a second), one event published every {cfg['publish_interval']:g} s."
        f" Host: {report['host']['cpus']} cores, Python {report['host']['python']};"
        " generator and app share the cores with whatever else runs (load average below).",
        "",
        "| variant | rounds | PSS growth per stream (KB) | keepalive lateness p50 / p99 / max (ms)"
        " | keepalives received | app CPU (% of a core) | app CPU per message written (us)"
        " | generator CPU (% of a core) | open at end | events lost"
        " | load average (1 min) at each start, end |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['variant']} | {row['rounds']} | {row['pss_kb_per_stream']}"
            f" | {row['lateness_p50_ms']} / {row['lateness_p99_ms']} / {row['lateness_max_ms']}"
            f" | {row['keepalives']:,.0f} | {row['app_cpu_pct']} | {row['app_cpu_us_per_message']}"
            f" | {row['gen_cpu_pct']}"
            f" | {row['open_at_end']:,} | {row['events_lost']}"
            f" | {', '.join(f'{v:.1f}' for v in row['loadavg'])} |"
        )
    lines += [
        "",
        "Variants: " + "; ".join(f"`{n}` = {ref}" for n, ref in cfg["variants"]) + ".",
        "",
        "Method: PSS growth per stream = (median Pss of the app process during the steady"
        f" hold, from {SETTLE_S:g} s after the ramp to 1 s before the end - median Pss while"
        " idle after one warm-up stream and publish) / streams open at the end. Lateness:"
        " the generator's (time since the stream's previous bytes minus the interval, every"
        " keepalive of the run, ramp included). CPU: process CPU time over the steady window;"
        " per message: app CPU time over the whole load / (keepalives + events received)."
        " Medians over rounds; rounds interleave the variants.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--hold", type=float, default=30.0)
    p.add_argument("--ramp", type=float, default=10.0)
    p.add_argument("--keepalive", type=float, default=1.0, help="SSE_KEEPALIVE_INTERVAL (s)")
    p.add_argument(
        "--publish-interval",
        type=float,
        default=5.0,
        help="seconds between published events (longer than --keepalive, so most writes"
        " are keepalives)",
    )
    p.add_argument("--http", default="h11", choices=("h11", "httptools"))
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=REF",
        help="a git ref whose app/src to serve, or 'worktree' (default: worktree=worktree)",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "app_streams"))
    args = p.parse_args(argv)
    if not 1 <= args.streams <= 10_000 or args.hold > 600 or args.ramp > 120 or args.rounds > 5:
        p.error("bounded: 1-10,000 streams, hold <= 600 s, ramp <= 120 s, rounds <= 5")
    variants = [tuple(v.split("=", 1)) for v in (args.variant or ["worktree=worktree"])]
    if any(len(v) != 2 for v in variants):
        p.error("--variant is NAME=REF")
    runs = []
    with tempfile.TemporaryDirectory(prefix="app-streams-") as scratch:
        trees = {name: source_tree(ref, Path(scratch)) for name, ref in variants}
        for n in range(args.rounds):
            for name, _ in variants:
                print(f"round {n + 1}: {name} ...", file=sys.stderr, flush=True)
                run = run_one(name, trees[name], args)
                run["round"] = n + 1
                print(
                    f"  {run['pss_kb_per_stream']} KB/stream, lateness p50/p99"
                    f" {run['lateness_ms']['p50']}/{run['lateness_ms']['p99']} ms,"
                    f" app CPU {run['app_cpu_pct']}%, generator {run['gen_cpu_pct']}%,"
                    f" open {run['open_at_end']}, lost {run['events_lost']},"
                    f" load {run['loadavg_start'][0]}",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(run)
    report = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "config": {
            "streams": args.streams,
            "hold": args.hold,
            "ramp": args.ramp,
            "keepalive": args.keepalive,
            "http": args.http,
            "publish_interval": args.publish_interval,
            "variants": variants,
            "rounds": args.rounds,
        },
        "summary": summarise(runs, [n for n, _ in variants]),
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
