#!/usr/bin/env python3
"""Where a release restart's time goes, under load: `bench/restart_gap.py` (issue 20).

Holds N streams through nginx (TLS) inside a deployed molecule container with
`sseprobe load` (bench/runner.py, as bench/bench.py runs it; events published once a
second straight to the backend) and, once they are all open, runs `playbooks/backend.yml`
with a new `sse_backend_version` (the role's restart handler). Then it waits until every
client is connected again, stops the load and reads:

- from the load: time back after the drop (drop -> first byte of the new stream) p50 / p99
  / max, non-200 answers, events lost (published ids), the drops;
- from the journal (as root, the user manager's lines and the service's output, with
  microsecond timestamps), the restart's timeline, each relative to the service's stop
  (the user manager's "Stopping" line): the old process gone, the new master started
  (READY=1), the new worker booted, its app started, and its first answered stream (the
  first access-log line after the boot). The clients' drops are put on the same clock.

One result per --label goes into bench/results/restart_gap.json (merged with the labels
already there) and the table of all of them into restart_gap.md (its hand-written
"## Findings" part is kept). The container is whatever --scenario deployed (--deploy runs
molecule create + converge first; default: the bench scenario's container); nothing here
is a timed test. Actions:

  playbook   playbooks/backend.yml with a new sse_backend_version (the real release path)
  systemctl  `systemctl --user daemon-reload && restart` of the service as its user: what
             the role's restart handler runs (tasks/restart.yml), without the release build
  handoff    overlap instead of restart: start --new-unit (a second unit on the same socket
             unit, `Sockets=sse-backend.socket`, made by hand in the container), wait until
             its app has started, then stop --old-unit

--reconnect-delay makes the clients ignore the server's retry: (what a different retry:
sent at shutdown would do); --direct goes straight to the backend (no nginx, no TLS).
bench/bench.py's restart scenario can import timeline(), gap_summary() and herd_cpu() to
add the same split to its own restart figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
# the same targets and client count as the bench's restart scenario
from bench import CACERT, COUNT_CLIENTS, DIRECT, NGINX, PUBLISH_URL  # noqa: E402
from bench import molecule_vars as scenario_vars  # noqa: E402

IN = "/opt/sse-restart-gap"
PROBE_PACKAGE = "ansible_collections/sse/stack/plugins/module_utils"
UNIT = "sse-backend.service"
USER = "sse"  # the molecule deployments' sse_backend_user
PLAYBOOK_TIMEOUT = 600.0
FINDINGS = "## Findings"
HERD_WINDOW = 12.0  # seconds after the stop over which each group's CPU is summed
# journal lines that mark the restart's steps: (key, where the line comes from, its start)
MARKS = (
    ("stop", "manager", "Stopping "),
    ("stopped", "manager", "Stopped "),
    ("start", "manager", "Starting "),
    ("ready", "manager", "Started "),
    ("master_boot", "service", "Starting gunicorn"),
    ("worker_boot", "service", "Booting worker"),
    ("app_started", "service", "Application startup complete"),
)


def log(message: str) -> None:
    print(f"[restart-gap {time.strftime('%H:%M:%S')}] {message}", flush=True)


def container_of(scenario: str) -> str:
    data = yaml.safe_load((ROOT / f"molecule/{scenario}/molecule.yml").read_text()) or {}
    return str(data["platforms"][0]["name"])


def timeline(
    container: str, since: float, unit: str = UNIT, new_unit: str = ""
) -> dict[str, float]:
    """The restart's steps as wall-clock seconds, read from the container's journal since
    ``since`` (epoch seconds): the first line of each MARKS entry (the stop's from ``unit``,
    the start's from ``new_unit``, the same unit unless a second one takes over), and the
    first answered stream after the new app started (``first_stream``)."""
    out = subprocess.run(
        ["podman", "exec", container, "journalctl", "--no-pager", "-o", "json",
         "--since", f"@{since:.3f}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    new_unit = new_unit or unit
    marks: dict[str, float] = {}
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if not isinstance(message, str):
            continue
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        manager = entry.get("USER_UNIT") or entry.get("UNIT")
        service = entry.get("_SYSTEMD_USER_UNIT")
        for key, where, start in MARKS:
            wanted = unit if key in ("stop", "stopped") else new_unit
            source = manager if where == "manager" else service
            found = message.startswith(start) if where == "manager" else start in message
            if source == wanted and key not in marks and found:
                marks[key] = at
        if (
            service == new_unit
            and "app_started" in marks
            and "first_stream" not in marks
            and "GET /notify/events" in message
        ):
            marks["first_stream"] = at
    return marks


def gap_summary(marks: dict[str, float], drops_wall: list[float]) -> dict[str, Any]:
    """Each step in seconds after the stop began; and the split: stop (stop -> old gone),
    systemd (old gone -> new master execs), master boot (-> READY), worker boot (-> app
    started), first stream (-> first answered stream)."""
    if "stop" not in marks:
        return {"error": "no 'Stopping' line of the unit in the journal"}
    t0 = marks["stop"]
    rel = {k: round(v - t0, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])}
    steps = [
        ("stop", "stop", "stopped"),
        ("systemd", "stopped", "master_boot"),
        ("master boot", "master_boot", "ready"),
        ("worker boot", "ready", "app_started"),
        ("first stream", "app_started", "first_stream"),
    ]
    split = {
        name: round(marks[b] - marks[a], 3) for name, a, b in steps if a in marks and b in marks
    }
    summary: dict[str, Any] = {"marks_s": rel, "split_s": split}
    if drops_wall:
        summary["drops_s"] = [round(min(drops_wall) - t0, 3), round(max(drops_wall) - t0, 3)]
        if "first_stream" in marks:
            # how long the socket had no process taking streams after the first client lost
            # its stream: the floor of the time back whatever the clients' retry
            summary["no_server_s"] = round(marks["first_stream"] - min(drops_wall), 3)
    return summary


def herd_cpu(samples: list[dict[str, Any]], start: float, window: float) -> dict[str, int]:
    """CPU (% of one core) of each process group (runner.py's: nginx, backend, probe) over
    ``window`` seconds from ``start`` (CLOCK_MONOTONIC): who was busy while the clients
    came back. A group whose processes were replaced (the backend) counts only its new ones."""
    inside = [x for x in samples if start <= x["t"] <= start + window]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    span = last["t"] - first["t"]
    out = {}
    for name, group in last["groups"].items():
        before = first["groups"].get(name, {}).get("cpu_s", 0.0)
        # a restarted backend's new processes start from 0 and its old ones are gone
        used = (
            group["cpu_s"] - before
            if group["pids"] == first["groups"].get(name, {}).get("pids")
            else group["cpu_s"]
        )
        out[name] = round(100 * max(used, 0.0) / span)
    return out


class Lab:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.container = args.container or container_of(args.scenario)
        self.vars = scenario_vars(args.scenario)
        # the bench scenario's state where bench/bench.py keeps it (`make bench ... --keep`)
        self.ephemeral = (
            ROOT / ".cache" / "bench" / "molecule"
            if args.scenario == "bench"
            else ROOT / ".cache" / "restart_gap" / args.scenario
        )
        self.env = dict(os.environ, MOLECULE_EPHEMERAL_DIRECTORY=str(self.ephemeral))
        self.logs = ROOT / ".cache" / "restart_gap" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, cmd: list[str], timeout: float = PLAYBOOK_TIMEOUT) -> float:
        path = self.logs / f"{name}.log"
        start = time.monotonic()
        with path.open("w") as out:
            out.write("$ " + shlex.join(cmd) + "\n")
            out.flush()
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, timeout=timeout
            )  # fmt: skip
        if proc.returncode != 0:
            tail = "\n".join(path.read_text().splitlines()[-25:])
            raise SystemExit(f"{name} failed (exit {proc.returncode}); {path}:\n{tail}")
        return time.monotonic() - start

    def podman(self, *args: str) -> str:
        return subprocess.run(
            ["podman", "exec", self.container, *args], capture_output=True, text=True, check=True
        ).stdout

    def install_probe(self) -> None:
        self.podman("mkdir", "-p", f"{IN}/{PROBE_PACKAGE}")
        copies = [(ROOT / "bench" / "runner.py", "runner.py")]
        for path in sorted((ROOT / "collections" / PROBE_PACKAGE).glob("sseprobe*.py")):
            copies.append((path, f"{PROBE_PACKAGE}/{path.name}"))
        for src, dest in copies:
            subprocess.run(["podman", "cp", str(src), f"{self.container}:{IN}/{dest}"], check=True)

    def user_systemctl(self, command: str) -> float:
        """``systemctl --user <command>`` as the service user; its duration."""
        uid = self.podman("id", "-u", USER).strip()
        start = time.monotonic()
        self.podman("runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
                    "bash", "-c", f"systemctl --user {command}")  # fmt: skip
        return time.monotonic() - start

    def wait_app_started(self, unit: str, since: float) -> None:
        for _ in range(600):
            if "app_started" in timeline(self.container, since, unit, unit):
                return
            time.sleep(0.1)
        raise SystemExit(f"{unit}: no 'Application startup complete' in 60 s")

    def clients(self) -> int:
        port = "8000" if self.args.direct else "443"
        return int(self.podman("python3", "-c", COUNT_CLIENTS, port).strip() or 0)

    def clock_offset(self) -> float:
        """Wall clock minus CLOCK_MONOTONIC in the container (the probe's times are
        monotonic, the journal's are wall clock)."""
        probe = "import time; print(time.time() - time.monotonic())"
        return float(self.podman("python3", "-c", probe).strip())

    def measure(self) -> dict[str, Any]:
        a = self.args
        streams, ramp = a.streams, max(5.0, a.streams / 100.0)
        stop_file = f"{IN}/stop"
        load = [
            *(DIRECT if a.direct else [*NGINX, "--cacert", CACERT]),
            "--streams", str(streams), "--hold", "1500", "--ramp", f"{ramp:g}",
            "--keepalive-interval", f"{float(self.vars['sse_backend_keepalive_interval']):g}",
            "--publish-url", PUBLISH_URL,
            "--publish-token", str(self.vars["sse_backend_publish_token"]),
            "--publish-interval", "1",
        ]  # fmt: skip
        if a.reconnect_delay is not None:
            load += ["--reconnect-delay", f"{a.reconnect_delay:g}"]
        cmd = [
            *("podman", "exec", "--privileged", self.container, "python3", f"{IN}/runner.py"),
            *("--stop-file", stop_file, "--", *load),
        ]
        log(f"{a.label}: {streams} streams through nginx, ramp {ramp:g} s")
        load_before = os.getloadavg()[0]
        with (self.logs / f"load-{a.label}.log").open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                time.sleep(1.2 + ramp)
                for _ in range(60):  # every client open (a loaded host ramps late), then 5 s
                    if self.clients() >= streams:
                        break
                    time.sleep(0.5)
                time.sleep(5.0)
                if self.clients() < streams:
                    log(f"only {self.clients()} of {streams} clients connected before the restart")
                since = float(self.podman("date", "+%s.%N").strip()) - 1.0
                version = a.version or f"1.0.{int(time.time())}-gap"
                if a.action == "playbook":
                    took = self.run(
                        f"playbook-{a.label}",
                        ["ansible-playbook", "-i", str(self.ephemeral / "inventory"),
                         str(ROOT / "playbooks" / "backend.yml"),
                         "-e", json.dumps({"sse_backend_version": version})],
                    )  # fmt: skip
                    log(f"{a.label}: backend.yml ({version}) took {took:.0f} s")
                elif a.action == "handoff":  # a second unit on the socket first, then the stop
                    version = "unchanged"
                    start = time.monotonic()
                    self.user_systemctl(f"start {a.new_unit}")
                    self.wait_app_started(a.new_unit, since)
                    self.user_systemctl(f"stop {a.old_unit}")
                    took = time.monotonic() - start
                    log(
                        f"{a.label}: {a.new_unit} accepting, then {a.old_unit} stopped:"
                        f" {took:.1f} s"
                    )
                else:  # the handler's restart alone, by hand (quick comparisons of unit edits)
                    version = "unchanged"
                    took = self.user_systemctl(f"daemon-reload && systemctl --user restart {UNIT}")
                    log(f"{a.label}: systemctl --user restart took {took:.1f} s")
                # counting the clients' connections right after a quick restart said "all
                # back" before they had reconnected: a fixed wait, long enough, instead
                time.sleep(a.settle)
                self.podman("touch", stop_file)
                out, _ = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        data = json.loads(out)
        result = data["load"]
        if "error" in result:
            raise SystemExit(f"load failed: {result['error']}: {result.get('output', '')}")
        offset = self.clock_offset()
        drops_wall = [result["t0_monotonic"] + d + offset for d in result["drops_at_s"]]
        marks = (
            timeline(self.container, since, a.old_unit, a.new_unit)
            if a.action == "handoff"
            else timeline(self.container, since)
        )
        cpu = (
            herd_cpu(data["samples"], marks["stop"] - offset, HERD_WINDOW)
            if "stop" in marks
            else {}
        )
        return {
            "label": a.label,
            "note": a.note,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "streams": streams,
            "target": load[0],
            "version": version,
            "action": a.action,
            "action_s": round(took, 1),
            "loadavg": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "retry_ms": result["retry_ms"],
            "reconnect_delay_s": a.reconnect_delay,
            "opened": result["opened"],
            "drops": result["drops"],
            "resumed": result["resumed"],
            "open_at_end": result.get("open_at_end", result.get("open")),
            "non_200": result["non_200"],
            "statuses": result["statuses"],
            "attempt_failures": result["attempt_failures"],
            "time_back_ms": result["time_back_ms"],
            "events_lost": result["events_lost"],
            "loss_method": result["loss_method"],
            "published": result["published"],
            **gap_summary(marks, drops_wall),
            "herd_cpu_pct": cpu,
        }


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Restart under load: where the time goes (bench/restart_gap.py)",
        "",
        "Each row: N streams held through nginx (TLS; `direct`: straight to the backend) in"
        " one molecule container, events published once a second, while the backend restarts"
        " (action `playbook`: `playbooks/backend.yml` with a new `sse_backend_version`;"
        " `systemctl`: the restart handler's `systemctl --user restart` alone; `handoff`: a"
        " second unit on the same socket unit started first, the old one stopped once the"
        " new app has started). Times in seconds after the user manager's `Stopping` line of"
        " the old unit (journal timestamps; negative: before it); time back = a client's drop"
        " -> first byte of its new stream. CPU: % of one core in the 12 s after the stop."
        " Goal (issue 20): back within retry + 1 s, 0 non-200, 0 events lost, at 1,000"
        " streams.",
        "",
        "| label | action | streams | load avg | retry ms | back p50 / p99 / max ms"
        " | non-200 | lost | drops at | old gone | new master READY | app started | first stream"
        " | no server after first drop | CPU % probe / nginx / backend | note |",
        "| --- |" + " --- |" * 15,
    ]
    for label, r in results.items():
        back = r["time_back_ms"]
        m = r.get("marks_s", {})

        def at(key: str, m: dict[str, float] = m) -> str:
            return f"{m[key]:.2f}" if key in m else "-"

        drops = r.get("drops_s")
        c = r.get("herd_cpu_pct") or {}
        cpu = " / ".join(str(c.get(g, "-")) for g in ("probe", "nginx", "backend"))
        action = r.get("action", "systemctl")
        action += " direct" if r.get("target", "").startswith("http:") else ""
        lines.append(
            f"| {label} | {action} | {r['streams']:,} | {r['loadavg'][0]} / {r['loadavg'][1]}"
            f" | {r['retry_ms']} | {back.get('p50', '-')} / {back.get('p99', '-')} /"
            f" {back.get('max', '-')} | {r['non_200']} | {r['events_lost']}"
            f" | {f'{drops[0]:.2f}-{drops[1]:.2f}' if drops else '-'} | {at('stopped')}"
            f" | {at('ready')} | {at('app_started')} | {at('first_stream')}"
            f" | {r.get('no_server_s', '-')} | {cpu} | {r.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="bench", help="molecule scenario (default: bench)")
    parser.add_argument("--container", help="default: the scenario's first platform")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--label", default="run", help="the row's name in the results")
    parser.add_argument("--note", default="", help="what this row's deployment changes")
    parser.add_argument("--version", help="sse_backend_version to deploy (default: unique)")
    parser.add_argument(
        "--reconnect-delay", type=float, help="clients' reconnect delay (default: the retry:)"
    )
    parser.add_argument(
        "--action",
        choices=("playbook", "systemctl", "handoff"),
        default="playbook",
        help="playbook: backend.yml with a new sse_backend_version; systemctl: the restart alone",
    )
    parser.add_argument("--old-unit", default=UNIT, help="the unit the handoff stops")
    parser.add_argument("--new-unit", default="sse-backend-green.service", help="handoff's unit")
    parser.add_argument(
        "--settle", type=float, default=25.0, help="seconds after the action before the load stops"
    )
    parser.add_argument(
        "--direct", action="store_true", help="streams straight to the backend (no nginx, no TLS)"
    )
    parser.add_argument("--deploy", action="store_true", help="molecule create + converge first")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    lab = Lab(args)
    if args.deploy:
        lab.run("molecule-create", ["molecule", "create", "-s", args.scenario])
        lab.run("molecule-converge", ["molecule", "converge", "-s", args.scenario])
    lab.install_probe()
    result = lab.measure()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "restart_gap.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.label] = result
    path.write_text(json.dumps(results, indent=1) + "\n")
    md = out / "restart_gap.md"
    # the hand-written reading below the table (from FINDINGS on) survives a new row
    kept = md.read_text().partition(FINDINGS)[1:] if md.is_file() else ("", "")
    md.write_text(render(results) + ("\n" + "".join(kept) if kept[0] else ""))
    log(
        json.dumps(
            {
                k: result.get(k)
                for k in (
                    "time_back_ms",
                    "non_200",
                    "events_lost",
                    "split_s",
                    "marks_s",
                    "drops_s",
                    "no_server_s",
                )
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
