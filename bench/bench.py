#!/usr/bin/env python3
"""`make bench`: the deployment measured under load, beside the naive one (issue 9).

1. Deploys the molecule scenario `bench` (site.yml with the bench variables, plus the naive
   deployment of molecule/bench/naive.yml) into one container, bench-debian12.
2. Copies the probe (the collection's module_utils sseprobe*.py, in their package folders)
   and bench/runner.py into it and runs every load INSIDE the container, loopback only:
     hold      N streams through nginx (TLS), idle, keepalive every 5 s
     direct    the same straight against the backend (http://127.0.0.1:8000)
     baseline  the same against the naive deployment (https://localhost:8443)
     reload    streams through nginx while playbooks/proxy.yml runs with a changed harmless
               variable (the role's reload path); events published once a second
     restart   streams through nginx while playbooks/backend.yml deploys a new
               sse_backend_version (the role's restart path); events published once a second
     fanout    streams through nginx while events are published at a fixed rate straight to
               the backend (single process, no broker): publish -> receipt latency
     fanout-broker  the same after playbooks/broker.yml (redis-server in the container,
               roles/sse_broker) and backend.yml with sse_backend_broker_url (always last:
               it changes the backend)
   Every load through nginx resumes TLS sessions after its first stream (--tls-resume),
   as returning browsers do. --set VAR=VALUE (repeatable) gives a role variable to the
   deployment (converge; with --no-deploy: playbooks/proxy.yml applies it first), so a
   lever is measured in one invocation, e.g. `--scenarios hold --set
   sse_nginx_ssl_buffer_size=4096`.
   runner.py samples memory, descriptors and CPU of nginx and the backend from /proc.
3. Writes bench/results/results.json, REPORT.md and bench.png (bench/report.py), then
   destroys the container (--keep leaves it).

Everything is bounded: each load ends by itself after ramp + hold (the reload and restart
loads are stopped once their playbook and the resume window are over, and end by
themselves at the latest after their hold).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import report  # noqa: E402

SCENARIO = "bench"
CONTAINER = "bench-debian12"
EPHEMERAL = ROOT / ".cache" / "bench" / "molecule"
LOGS = ROOT / ".cache" / "bench" / "logs"
IN = "/opt/sse-bench"
# The probe's package folder: runner.py runs `python3 -m` on it from IN (no venv in there).
PROBE_PACKAGE = "ansible_collections/sse/stack/plugins/module_utils"
CACERT = "/etc/nginx/tls/sse-ca.crt"  # the local CA sse_nginx issues (self-signed mode)
NGINX = ["https://localhost/notify/events", "--resolve", "localhost:443:127.0.0.1"]
DIRECT = ["http://127.0.0.1:8000/notify/events"]
NAIVE = ["https://localhost:8443/notify/events", "--resolve", "localhost:8443:127.0.0.1"]
PUBLISH_URL = "http://127.0.0.1:8000/notify/publish"
RESTART_VERSION = "1.0.0-bench"
# The naive deployment gets a patient client: EventSource has no first-byte timeout, and
# nginx's default proxy_read_timeout (60 s) decides what such a client sees.
NAIVE_FIRST_BYTE_TIMEOUT = 65.0
# upper bound of a reload/restart load (above PLAYBOOK_TIMEOUT); it is stopped well before
ACTION_HOLD = 1200.0
PLAYBOOK_TIMEOUT = 900.0
RESUME_SETTLE = 5.0  # seconds after every client is connected again before the load stops
RESUME_LIMIT = 90.0  # the longest wait for the clients to come back
# the broker of the fanout-broker scenario: redis-server on loopback in the container
BROKER_URL = "redis://:{password}@127.0.0.1:6379/0"  # sse_broker_password: molecule.yml
SCENARIOS = "hold,direct,baseline,fanout,reload,restart,fanout-broker"
# ESTABLISHED client connections to a port, counted from /proc/net/tcp{,6} in the container
COUNT_CLIENTS = """
import sys
port, n = "%04X" % int(sys.argv[1]), 0
for name in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        for line in open(name).readlines()[1:]:
            f = line.split()
            n += f[3] == "01" and f[2].rsplit(":", 1)[1] == port
    except OSError:
        pass
print(n)
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def molecule_vars(scenario: str = SCENARIO) -> dict[str, Any]:
    """group_vars.all as molecule merges them: the shared config, then the scenario."""
    merged: dict[str, Any] = {}
    for path in (ROOT / ".config/molecule/config.yml", ROOT / f"molecule/{scenario}/molecule.yml"):
        data = yaml.safe_load(path.read_text()) or {}
        merged.update(
            ((data.get("provisioner") or {}).get("inventory") or {})
            .get("group_vars", {})
            .get("all", {})
        )
    return merged


def ramp_for(streams: int) -> float:
    """100 new streams a second (TLS handshakes on both ends share the 2 cores), 5-100 s."""
    return min(100.0, max(5.0, streams / 100.0))


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def seconds(value: Any) -> float:
    """An nginx time ("15s", "3m", 20) in seconds."""
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.vars = molecule_vars()
        self.shutdown_timeout = seconds(self.vars["sse_nginx_worker_shutdown_timeout"])
        self.keepalive = float(self.vars["sse_backend_keepalive_interval"])
        self.token = str(self.vars["sse_backend_publish_token"])
        self.env = dict(os.environ, MOLECULE_EPHEMERAL_DIRECTORY=str(EPHEMERAL))
        self.settings = dict(args.set)
        if args.retry_jitter_ms is None:
            # molecule.yml's (the default run's) jitter, for the report
            args.retry_jitter_ms = int(self.vars["sse_backend_retry_jitter_ms"])
        else:
            # the app's reconnect jitter (SSE_RETRY_JITTER_MS): each stream's retry: spread
            self.settings["sse_backend_retry_jitter_ms"] = args.retry_jitter_ms
        self.phases: dict[str, float] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    # -- commands ----------------------------------------------------------------------------

    def run(self, name: str, cmd: list[str], timeout: float = 1800.0) -> float:
        """Run a command with its output in .cache/bench/logs/<name>.log; its duration."""
        path = LOGS / f"{name}.log"
        start = time.monotonic()
        with path.open("w") as out:
            out.write("$ " + shlex.join(cmd) + "\n")
            out.flush()
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, timeout=timeout
            )
        took = time.monotonic() - start
        if proc.returncode != 0:
            tail = path.read_text().splitlines()[-25:]
            raise SystemExit(
                f"bench: {name} failed (exit {proc.returncode}); {path}:\n" + "\n".join(tail)
            )
        return took

    def podman(self, *args: str) -> str:
        return subprocess.run(
            ["podman", "exec", CONTAINER, *args], capture_output=True, text=True, check=True
        ).stdout

    def phase(self, name: str, took: float) -> None:
        self.phases[name] = round(took, 1)
        log(f"{name}: {took:.0f} s")

    # -- deployment --------------------------------------------------------------------------

    def deploy(self) -> None:
        self.phase(
            "molecule destroy (clean start)",
            self.run("molecule-destroy-before", ["molecule", "destroy", "-s", SCENARIO]),
        )
        self.phase(
            "molecule create", self.run("molecule-create", ["molecule", "create", "-s", SCENARIO])
        )
        extra = ["--", "-e", json.dumps(self.settings)] if self.settings else []
        self.phase(
            "molecule converge (site.yml + naive)",
            self.run("molecule-converge", ["molecule", "converge", "-s", SCENARIO, *extra]),
        )

    def naive(self, action: str) -> None:
        """Start or stop the naive deployment: it runs for the baseline only. Its nginx
        workers beside the role's would keep the role's reload check (sse_nginx's
        nginx_reload: no worker from before may still accept) from ever passing."""
        self.podman("systemctl", action, "sse-naive-nginx.service", "sse-naive-app.service")

    def apply_settings(self) -> None:
        """--set on a running deployment (--no-deploy): the nginx variables by proxy.yml."""
        if self.settings:
            # a stamp header too, so nginx always reloads: fresh workers for the memory figures
            stamp = time.strftime("%Y%m%d%H%M%S")
            extra = {"sse_nginx_extra_directives": [f'add_header X-Bench-Run "{stamp}" always;']}
            info = self.playbook("playbook-settings", "proxy.yml", {**extra, **self.settings})
            self.phase("proxy.yml with --set", info["end"] - info["start"])
            time.sleep(3.0)  # the old workers (no streams left) exit before the idle sample

    def install_probe(self) -> None:
        self.podman("mkdir", "-p", f"{IN}/{PROBE_PACKAGE}")
        copies = [(ROOT / "bench" / "runner.py", "runner.py")]
        for path in sorted((ROOT / "collections" / PROBE_PACKAGE).glob("sseprobe*.py")):
            copies.append((path, f"{PROBE_PACKAGE}/{path.name}"))
        for src, dest in copies:
            subprocess.run(["podman", "cp", str(src), f"{CONTAINER}:{IN}/{dest}"], check=True)

    def playbook(self, name: str, playbook: str, extra: dict[str, Any]) -> dict[str, Any]:
        cmd = [
            "ansible-playbook",
            "-i",
            str(EPHEMERAL / "inventory"),
            str(ROOT / "playbooks" / playbook),
            "-e",
            json.dumps(extra),
        ]
        start = time.monotonic()
        took = self.run(name, cmd, timeout=PLAYBOOK_TIMEOUT)
        return {"playbook": playbook, "extra_vars": extra, "start": start, "end": start + took}

    def host_info(self) -> dict[str, Any]:
        mem_kb = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        nginx = subprocess.run(
            ["podman", "exec", CONTAINER, "nginx", "-v"], capture_output=True, text=True
        ).stderr.strip()
        return {
            "cpus": os.cpu_count(),
            "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(),
            "nginx": nginx.replace("nginx version: ", ""),
            "container_python": self.podman("python3", "--version").strip(),
            "nofile_hard": int(self.podman("sh", "-c", "ulimit -Hn").strip()),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "other_containers": len(
                subprocess.run(
                    ["podman", "ps", "-q"], capture_output=True, text=True
                ).stdout.split()
            )
            - 1,
        }

    # -- measurements ------------------------------------------------------------------------

    def measure(
        self,
        name: str,
        target: list[str],
        streams: int,
        hold: float,
        ramp: float,
        extra: list[str] | None = None,
        action: Callable[[float, str], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        if target[0].startswith("https") and not self.args.no_tls_resume:
            extra = [*(extra or []), "--tls-resume"]
        stop = f"{IN}/stop-{name}"
        cmd = [
            # privileged: reading other users' /proc/PID/smaps_rollup needs CAP_SYS_PTRACE
            *("podman", "exec", "--privileged", CONTAINER, "python3", f"{IN}/runner.py"),
            *("--stop-file", stop),
            "--",
            target[0],
            *target[1:],
            *(["--cacert", CACERT] if target[0].startswith("https") else []),
            *("--streams", str(streams), "--hold", f"{hold:g}", "--ramp", f"{ramp:g}"),
            *("--keepalive-interval", f"{self.keepalive:g}"),
            *(extra or []),
        ]
        log(f"{name}: {streams} streams, ramp {ramp:g} s, hold {hold:g} s -> {target[0]}")
        started = time.monotonic()
        load_before = loadavg()
        with (LOGS / f"load-{name}.log").open("w") as err:
            err.write("$ " + shlex.join(cmd).replace(self.token, "***") + "\n")
            err.flush()
            err.write(f"runner nofile: {self.podman('sh', '-c', 'ulimit -Sn; ulimit -Hn')}")
            err.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            actions: dict[str, Any] = {}
            try:
                if action is not None:
                    actions = action(started, stop)
                out, _ = proc.communicate(timeout=ramp + hold + 60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        data = json.loads(out)
        load = data["load"]
        if "error" in load:
            raise SystemExit(f"bench: {name}: {load['error']}: {load.get('output', '')}")
        for limit, hit in (load.get("limits") or {}).items():
            # the run goes on (the report shows it), but say at once which limit stopped it
            log(f"{name}: LIMIT {limit}: {hit['count']} connect(s) failed: {hit['message']}")
        self.phase(f"{name} measurement", time.monotonic() - started)
        load["host_loadavg"] = [load_before, loadavg()]
        return {
            "name": name,
            "target": target[0],
            "streams": streams,
            "hold": hold,
            "ramp": ramp,
            "load": load,
            "samples": data["samples"],
            "actions": actions,
        }

    def wait_ramp(self, started: float, ramp: float) -> None:
        # runner.py samples 1.2 s before starting the load; then the ramp; then 5 s steady
        time.sleep(max(0.0, started + 1.2 + ramp + 5.0 - time.monotonic()))

    def wait_back(self, streams: int, name: str) -> float:
        """Wait until ``streams`` clients are connected to nginx again (bounded); seconds."""
        start = time.monotonic()
        while time.monotonic() - start < RESUME_LIMIT:
            count = int(self.podman("python3", "-c", COUNT_CLIENTS, "443").strip() or 0)
            if count >= streams:
                break
            time.sleep(1.0)
        took = time.monotonic() - start
        log(f"{name}: clients connected again after {took:.0f} s; settling {RESUME_SETTLE:g} s")
        time.sleep(RESUME_SETTLE)
        return took

    def reload_action(self, streams: int, ramp: float) -> Callable[[float, str], dict[str, Any]]:
        def act(started: float, stop: str) -> dict[str, Any]:
            self.wait_ramp(started, ramp)
            stamp = time.strftime("%Y%m%d%H%M%S")
            # a harmless change: one response header in the server block
            extra = {"sse_nginx_extra_directives": [f'add_header X-Bench-Reload "{stamp}" always;']}
            info = self.playbook("playbook-reload", "proxy.yml", extra)
            log(
                f"reload: proxy.yml took {info['end'] - info['start']:.0f} s; waiting out"
                f" worker_shutdown_timeout {self.shutdown_timeout:g} s and the resume"
            )
            # old workers close their streams at reload + worker_shutdown_timeout
            time.sleep(self.shutdown_timeout + 2.0)
            info["wait_back_s"] = self.wait_back(streams, "reload")
            self.podman("touch", stop)
            return info

        return act

    def restart_action(self, streams: int, ramp: float) -> Callable[[float, str], dict[str, Any]]:
        def act(started: float, stop: str) -> dict[str, Any]:
            self.wait_ramp(started, ramp)
            info = self.playbook(
                "playbook-restart", "backend.yml", {"sse_backend_version": RESTART_VERSION}
            )
            log(f"restart: backend.yml took {info['end'] - info['start']:.0f} s")
            info["wait_back_s"] = self.wait_back(streams, "restart")
            self.podman("touch", stop)
            return info

        return act

    def fanout(self, name: str) -> dict[str, Any]:
        """Streams through nginx, events published at --fanout-rate straight to the backend."""
        a = self.args
        publish = ["--publish-url", PUBLISH_URL, "--publish-token", self.token]
        publish += ["--publish-interval", f"{1.0 / a.fanout_rate:g}"]
        run = self.measure(
            name, NGINX, a.fanout_streams, a.fanout_hold, ramp_for(a.fanout_streams), publish
        )
        run["fanout"] = {"rate_per_s": a.fanout_rate}
        return run

    def deploy_broker(self) -> dict[str, Any]:
        """redis-server by roles/sse_broker, then the backend pointed at it (a restart)."""
        info = self.playbook("playbook-broker", "broker.yml", {})
        self.phase("broker.yml (redis-server)", info["end"] - info["start"])
        backend = {
            "sse_backend_broker_url": BROKER_URL.format(password=self.vars["sse_broker_password"]),
            "sse_backend_workers": self.args.fanout_broker_workers,
            "sse_backend_version": RESTART_VERSION,
            **{k: v for k, v in self.settings.items() if k.startswith("sse_backend_")},
        }
        info = self.playbook("playbook-backend-broker", "backend.yml", backend)
        self.phase("backend.yml with the broker", info["end"] - info["start"])
        return {"workers": self.args.fanout_broker_workers, "server": "redis-server (sse_broker)"}

    def keep_partial(self, runs: dict[str, Any]) -> None:
        """The raw figures so far: a later phase that fails (a long run on a busy host)
        leaves the earlier ones in .cache/bench/logs/runs-partial.json."""
        (LOGS / "runs-partial.json").write_text(json.dumps(runs, indent=1) + "\n")

    def measure_all(self, ramp: float) -> dict[str, Any]:
        """Every wanted load, in the order of SCENARIOS."""
        a = self.args
        wanted = a.scenarios.split(",")
        unknown = sorted(set(wanted) - set(SCENARIOS.split(",")))
        if unknown:
            raise SystemExit(f"bench: unknown scenario(s) {unknown}; known: {SCENARIOS}")
        runs: dict[str, Any] = {}
        naive = ["--first-byte-timeout", f"{NAIVE_FIRST_BYTE_TIMEOUT:g}"]
        for name, target, extra, streams in (
            ("hold", NGINX, [], a.streams),
            ("direct", DIRECT, [], a.streams),
            ("baseline", NAIVE, naive, a.baseline_streams),
        ):
            if name in wanted:
                r_ramp = ramp if streams == a.streams else ramp_for(streams)
                if name == "baseline":
                    self.naive("start")
                runs[name] = self.measure(name, target, streams, a.hold, r_ramp, extra)
                self.keep_partial(runs)
                if name == "baseline":
                    self.naive("stop")
        if "fanout" in wanted:
            runs["fanout"] = self.fanout("fanout")
            self.keep_partial(runs)
        publish = ["--publish-url", PUBLISH_URL, "--publish-token", self.token]
        publish += ["--publish-interval", "1"]
        for name, streams, action in (
            ("reload", a.reload_streams, self.reload_action),
            ("restart", a.restart_streams, self.restart_action),
        ):
            if name in wanted:
                r_ramp = ramp_for(streams)
                runs[name] = self.measure(
                    name, NGINX, streams, ACTION_HOLD, r_ramp, publish, action(streams, r_ramp)
                )
                self.keep_partial(runs)
        if "fanout-broker" in wanted:
            broker = self.deploy_broker()
            runs["fanout-broker"] = self.fanout("fanout-broker")
            runs["fanout-broker"]["fanout"].update(broker)
        return runs

    def meta(self, ramp: float, host: dict[str, Any]) -> dict[str, Any]:
        """What results.json says about the run besides the loads."""
        a = self.args
        # the size knob the bench sets; the rest are the roles' defaults (derived)
        limits = ("sse_nginx_worker_connections",)
        return {
            "host": host,
            "phases_s": self.phases,
            "streams": a.streams,
            "hold_s": a.hold,
            "ramp_s": ramp,
            "reload_streams": a.reload_streams,
            "baseline_streams": a.baseline_streams,
            "restart_streams": a.restart_streams,
            "keepalive_interval_s": self.keepalive,
            "worker_shutdown_timeout_s": self.shutdown_timeout,
            "naive_first_byte_timeout_s": NAIVE_FIRST_BYTE_TIMEOUT,
            "restart_version": RESTART_VERSION,
            "limits": {k: self.vars[k] for k in limits},
            "settings": self.settings,
            "tls_resume": not a.no_tls_resume,
            "fanout_streams": a.fanout_streams,
            "fanout_hold_s": a.fanout_hold,
            "fanout_rate_per_s": a.fanout_rate,
            "retry_jitter_ms": a.retry_jitter_ms,
        }

    def main(self) -> int:
        a = self.args
        wall = time.monotonic()
        if not a.no_deploy:
            self.deploy()
        self.naive("stop")
        if a.no_deploy:
            self.apply_settings()
        self.install_probe()
        ramp = a.ramp if a.ramp is not None else ramp_for(a.streams)
        runs = self.measure_all(ramp)
        info = self.host_info()
        if not a.keep:
            self.phase(
                "molecule destroy",
                self.run("molecule-destroy", ["molecule", "destroy", "-s", SCENARIO]),
            )
        self.phases["total wall time"] = round(time.monotonic() - wall, 1)
        results = report.summarise(runs, self.meta(ramp, info))
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        report.render(results, out)
        total = self.phases["total wall time"]
        log(f"wrote {out}/REPORT.md, results.json, bench.png; total {total:.0f} s")
        return 0


def setting(text: str) -> tuple[str, Any]:
    """VAR=VALUE of --set (VALUE read as YAML: numbers, lists, mappings)."""
    name, sep, value = text.partition("=")
    if not sep or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected VAR=VALUE, got {text!r}")
    return name, yaml.safe_load(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="hold/direct/baseline streams")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold them")
    parser.add_argument(
        "--ramp", type=float, help="seconds to open them over (default N/200, 5-60)"
    )
    parser.add_argument("--reload-streams", type=int, help="default: --streams")
    parser.add_argument("--restart-streams", type=int, help="default: min(--streams, 1000)")
    parser.add_argument("--scenarios", default=SCENARIOS, help=f"default: {SCENARIOS}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=setting,
        metavar="VAR=VALUE",
        help="a role variable for the deployment (YAML value), e.g. sse_nginx_ssl_buffer_size=4096",
    )
    parser.add_argument(
        "--baseline-streams",
        type=int,
        help="naive deployment's streams (default: min(--streams, 2000); it serves ~10 anyway)",
    )
    parser.add_argument("--fanout-streams", type=int, default=2000)
    parser.add_argument("--fanout-hold", type=float, default=30.0)
    parser.add_argument("--fanout-rate", type=float, default=5.0, help="events published a second")
    parser.add_argument("--fanout-broker-workers", type=int, default=2)
    parser.add_argument(
        "--retry-jitter-ms",
        type=int,
        help="SSE_RETRY_JITTER_MS for the app (sse_backend_env): spread the reconnect herd",
    )
    parser.add_argument(
        "--no-tls-resume", action="store_true", help="every TLS connection a full handshake"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument("--no-deploy", action="store_true", help="use the running container")
    args = parser.parse_args()
    if args.reload_streams is None:
        args.reload_streams = args.streams
    if args.baseline_streams is None:
        args.baseline_streams = min(args.streams, 2000)
    if args.restart_streams is None:
        args.restart_streams = min(args.streams, 1000)
    return Bench(args).main()


if __name__ == "__main__":
    sys.exit(main())
