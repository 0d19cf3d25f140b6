#!/usr/bin/env python3
"""Where nginx's memory per SSE stream goes: `bench/nginx_split.py` (issue 20).

    python bench/nginx_split.py --h2-connections 20,4   # deploy, variants, destroy (~11 min)
    python bench/nginx_split.py --no-deploy --keep --variants h2-tls   # a running container

On the molecule `bench` scenario's container (bench-debian12; deployed the way bench.py
deploys it: molecule destroy, create, converge), N streams are held in each variant, one at
a time, each from a freshly restarted nginx (master and workers) AND a freshly restarted
backend (Gunicorn through its user unit), so both processes' growth is first use:

  h1-tls    HTTPS HTTP/1.1 through the role's site, TLS sessions resumed after the first
            stream (`sseprobe load --tls-resume`): what REPORT.md measures
  h1-plain  plain HTTP/1.1 through a copy of the role's rendered SSE location (`nginx -T`)
            in a test-fixture server on 127.0.0.1:--plain-port, no TLS (added by hand in
            the container, removed after): h1-tls - h1-plain = the TLS connection's cost
  h2-tls    HTTP/2: the same streams multiplexed over N TLS connections (`h2load`, Debian
            nghttp2-client installed in the container), held until stopped; one run
            h2-tls-cN per value of --h2-connections
  direct    straight to the backend (no nginx): the backend's share under the same method
  h1-tls-full  (not in the default set) h1-tls with a full handshake for every stream

Memory as REPORT.md's method: bench/runner.py's /proc samples (PSS of the nginx master and
workers, of the Gunicorn master and worker), per stream = (median over the steady hold -
idle before the load) / streams open, computed by bench/report.py's own function. The
sseprobe variants run through bench.py's Bench.measure (runner.py); h2load through a small
sampler here that calls runner.py's sample(). Each variant is checked to have really held
its streams: ESTABLISHED connections counted from /proc/net/tcp in the hold (clients to
nginx, nginx to the backend) and nginx's access-log lines of the variant (status 200 and
request time >= the hold). Writes bench/results/nginx_split.json and nginx_split.md (the
hand-written part from "## Findings" on is kept). Loopback only, inside the container;
every load is bounded (ramp + hold; h2load is stopped, and killed at the latest by
`timeout`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
# the bench's deployment, probe copy, load runs and memory figures, not copies of them
import report  # noqa: E402
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx import (  # noqa: E402
    access_logs,
    levels_for,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_match import (  # noqa: E402
    find_location,
)
from ansible_collections.sse.stack.plugins.module_utils.sse_diagnose_nginx_parse import (  # noqa: E402
    Directive,
    NginxConfig,
)
from restart_gap import UNIT, USER  # noqa: E402

from bench import (  # noqa: E402
    CONTAINER,
    COUNT_CLIENTS,
    DIRECT,
    IN,
    LOGS,
    NGINX,
    SCENARIO,
    Bench,
)

VARIANTS = "h1-tls,h1-plain,h2-tls,direct"
KNOWN = f"{VARIANTS},h1-tls-full"
FIXTURE = "/etc/nginx/conf.d/zz-nginx-split-plain.conf"
SSE_PATH = "/notify/events"
BACKEND_PORT = 8000
HEALTHZ = f"http://127.0.0.1:{BACKEND_PORT}/healthz"
FINDINGS = "## Findings"
# what the results keep of sseprobe load's report, and of nginx's configuration (nginx -T)
LOAD_KEYS = ["ok", "opened", "held", "open_at_end", "dropped", "never_opened", "non_200"]
LOAD_KEYS += ["attempt_failures", "statuses", "first_byte_ms", "nofile"]
NGINX_KEYS = ["worker_processes", "ssl_buffer_size", "proxy_buffer_size", "ssl_session_cache"]
NGINX_KEYS += ["http2_max_concurrent_streams", "http2_chunk_size", "http2_recv_buffer_size"]
# In the container (python3 -c, argv: IN, ramp, hold, ports, h2load command...): runner.py's
# sample() once a second with the ESTABLISHED connections to each port, from 1.2 s before
# the command to 2.2 s after it; the command gets SIGINT after ramp + hold. Prints
# {"load": {...}, "samples": [...]} as runner.py does (load: t0, series of streams open =
# connections to the backend, the command's output).
H2_SAMPLER = r"""
import json, signal, subprocess, sys, threading, time
sys.path.insert(0, sys.argv[1])
import runner
ramp, hold = float(sys.argv[2]), float(sys.argv[3])
ports = [int(p) for p in sys.argv[4].split(",")]
cmd = sys.argv[5:]

def established():
    hexes = {"%04X" % p: p for p in ports}
    n = {p: 0 for p in ports}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).readlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            port = hexes.get(f[2].rsplit(":", 1)[1])
            if f[3] == "01" and port is not None:
                n[port] += 1
    return n

samples, done = [], threading.Event()

def sampler():
    next_at = time.monotonic()
    while True:
        s = runner.sample()
        s["established"] = established()
        samples.append(s)
        next_at += 1.0
        if done.wait(max(0.0, next_at - time.monotonic())):
            return

thread = threading.Thread(target=sampler, daemon=True)
thread.start()
time.sleep(1.2)
t0 = time.monotonic()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
while proc.poll() is None and time.monotonic() < t0 + ramp + hold:
    time.sleep(0.2)
ended_early = proc.poll() is not None
elapsed = time.monotonic() - t0
if proc.poll() is None:
    proc.send_signal(signal.SIGINT)
try:
    out, _ = proc.communicate(timeout=10)
except subprocess.TimeoutExpired:
    proc.kill()
    out, _ = proc.communicate()
time.sleep(2.2)
done.set()
thread.join(5)
series = [
    {"t": round(s["t"] - t0, 3), "open": s["established"][ports[-1]]}
    for s in samples if s["t"] >= t0
]
load = {"t0_monotonic": t0, "elapsed_s": round(elapsed, 3), "series": series,
        "exit_status": proc.returncode, "ended_early": ended_early, "output": out[-4000:]}
print(json.dumps({"load": load, "samples": samples, "clock": "monotonic"}))
"""
# One access-log line of the role's format (sse_timed, roles/sse_nginx/templates/macros.j2)
ACCESS = re.compile(
    r'"GET (?P<path>\S+) HTTP/(?P<proto>[\d.]+)" status=(?P<status>\d+) bytes=(?P<bytes>\d+)'
    r" rt=(?P<rt>[\d.]+)"
)


def log(message: str) -> None:
    print(f"[nginx-split {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _block_text(d: Directive, indent: str = "    ") -> str:
    """A parsed directive written back as configuration (its block's directives too)."""
    if d.block is None:
        return indent + d.text()
    inner = [_block_text(child, indent + "    ") for child in d.block]
    return "\n".join([indent + d.text().removesuffix(" { ... }") + " {", *inner, indent + "}"])


def sse_location(config: str, path: str = SSE_PATH) -> tuple[str, str]:
    """The role's `location <path>` of `nginx -T`'s output, written back as configuration
    (the diagnose role's parser and matcher), and the access log in effect there (file and
    format)."""
    parsed = NginxConfig.from_dump(config)
    http = parsed.http()
    for server in parsed.servers():
        chain = find_location(server, path)
        if http and chain and chain[-1].directive.args == [path]:
            logs = access_logs(levels_for(http, server, chain))
            if not logs:
                raise SystemExit(f"no access_log file in effect at `location {path}`")
            return _block_text(chain[-1].directive), f"{logs[0]['path']} {logs[0]['format']}"
    raise SystemExit(f"nginx -T shows no `location {path}` block")


def directive(config: str, name: str) -> str:
    """The first `name` directive's arguments in `nginx -T`'s output, in the order nginx
    reads it ('' if none)."""

    def first(directives: list[Directive]) -> Directive | None:
        for d in directives:
            if d.name == name:
                return d
            found = first(d.block or [])
            if found:
                return found
        return None

    found = first(NginxConfig.from_dump(config).tree)
    return " ".join(found.args) if found else ""


class Split:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # bench.py's own Bench: its deployment, probe copy and load runs (runner.py)
        self.bench = Bench(
            argparse.Namespace(set=[], retry_jitter_ms=None, no_tls_resume=False, keep=args.keep)
        )
        self.access_log = ""

    def sh(self, script: str) -> str:
        return self.bench.podman("sh", "-c", script)

    # -- fresh processes between variants ---------------------------------------------------

    def restart_nginx(self) -> None:
        self.bench.podman("nginx", "-t", "-q")
        self.bench.podman("systemctl", "restart", "nginx.service")
        time.sleep(2.0)

    def restart_backend(self) -> None:
        """The user unit restarted as its user (what the role's handler runs), then wait
        until the new app answers, so the idle sample is after its start."""
        uid = self.bench.podman("id", "-u", USER).strip()
        self.bench.podman(
            "runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
            "systemctl", "--user", "restart", UNIT,
        )  # fmt: skip
        probe = (
            "import time, urllib.request\n"
            "for _ in range(120):\n"
            "    try:\n"
            f"        urllib.request.urlopen('{HEALTHZ}', timeout=2)\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.5)\n"
            "else:\n"
            "    raise SystemExit('backend: no /healthz answer in 60 s')\n"
        )
        self.bench.podman("python3", "-c", probe)
        time.sleep(2.0)

    # -- the plain-HTTP fixture -------------------------------------------------------------

    def fixture(self, config: str) -> str:
        location, _ = sse_location(config)
        text = (
            "# bench/nginx_split.py test fixture (removed after the h1-plain variant): the\n"
            "# role's rendered SSE location (nginx -T) in a server without TLS, loopback only\n"
            "server {\n"
            f"    listen 127.0.0.1:{self.args.plain_port};\n"
            "    server_name localhost;\n"
            f"    access_log {self.access_log};\n\n"
            f"{location}\n"
            "}\n"
        )
        return text

    def add_fixture(self, text: str) -> None:
        self.bench.podman("sh", "-c", f"cat > {FIXTURE} <<'EOF'\n{text}EOF\n")

    def remove_fixture(self) -> None:
        self.bench.podman("rm", "-f", FIXTURE)

    # -- checks -----------------------------------------------------------------------------

    def established(self, ports: list[int]) -> dict[str, int]:
        return {
            str(p): int(self.bench.podman("python3", "-c", COUNT_CLIENTS, str(p)).strip() or 0)
            for p in ports
        }

    def log_offset(self) -> int:
        return int(self.sh(f"stat -c %s {self.access_log.split()[0]}").strip())

    def log_check(self, offset: int, hold: float) -> dict[str, Any]:
        """nginx's access-log lines of the variant (from byte ``offset``): SSE requests by
        status and HTTP version, and how many lasted at least the hold (held streams)."""
        text = self.sh(f"tail -c +{offset + 1} {self.access_log.split()[0]}")
        lines = [m.groupdict() for m in map(ACCESS.search, text.splitlines()) if m]
        sse = [m for m in lines if m["path"].startswith(SSE_PATH)]
        statuses: dict[str, int] = {}
        for m in sse:
            key = f"{m['status']} HTTP/{m['proto']}"
            statuses[key] = statuses.get(key, 0) + 1
        held = [m for m in sse if m["status"] == "200" and float(m["rt"]) >= hold]
        return {
            "sse_requests": len(sse),
            "by_status": statuses,
            "held_200_for_hold": len(held),
            "rt_s_median": round(statistics.median(float(m["rt"]) for m in sse), 1)
            if sse
            else None,
            "bytes_median": statistics.median(int(m["bytes"]) for m in sse) if sse else None,
        }

    # -- the variants -----------------------------------------------------------------------

    def counts_action(self, ports: list[int]) -> Callable[[float, str], dict[str, Any]]:
        """Bench.measure's action: the connections in the hold (5 s after the ramp)."""
        a = self.args

        def act(started: float, stop: str) -> dict[str, Any]:
            time.sleep(max(0.0, started + 1.2 + a.ramp + 5.0 - time.monotonic()))
            return {"established_in_hold": self.established(ports)}

        return act

    def sseprobe(self, name: str, target: list[str], ports: list[int]) -> dict[str, Any]:
        a = self.args
        run = self.bench.measure(
            f"split-{name}", target, a.streams, a.hold, a.ramp, action=self.counts_action(ports)
        )
        load = run["load"]
        return {
            "load": {k: load.get(k) for k in LOAD_KEYS if k in load},
            "checks": run["actions"],
            "raw": run,
        }

    def h2(self, connections: int, limit: int) -> dict[str, Any]:
        a = self.args
        per_conn = -(-a.streams // connections)
        if per_conn > limit:
            # h2load would queue the rest, not open them: fewer streams than asked
            raise SystemExit(f"{per_conn} streams a connection > http2_max_concurrent_streams")
        # the connections (each opening its streams at once) spread over the ramp: `rate`
        # of them every `period_ms` (h2load's periods are whole milliseconds)
        rate = max(1, round(connections / a.ramp / 10))
        period_ms = max(1, round(a.ramp * 1000 * rate / connections))
        h2load = [
            "timeout", "-s", "KILL", f"{a.ramp + a.hold + 30:g}",
            "h2load", "-c", str(connections), "-m", str(per_conn), "-n", str(a.streams),
            "-r", str(rate), "--rate-period", f"{period_ms}ms",
            "-H", "Accept: text/event-stream",
            f"https://localhost{SSE_PATH}",
        ]  # fmt: skip
        ports = [443, BACKEND_PORT]
        cmd = [
            *("podman", "exec", "--privileged", CONTAINER, "python3", "-c", H2_SAMPLER),
            *(IN, f"{a.ramp:g}", f"{a.hold:g}", ",".join(map(str, ports)), *h2load),
        ]
        log(f"h2-tls, {connections} connections: {' '.join(h2load[4:])}")
        started = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=a.ramp + a.hold + 90, check=False
        )
        (LOGS / f"load-split-h2-tls-c{connections}.log").write_text(proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"h2 sampler failed ({proc.returncode}): {proc.stderr[-2000:]}")
        data = json.loads(proc.stdout)
        load = data["load"]
        if load["ended_early"]:
            raise SystemExit(f"h2load ended before the hold: {load['output']}")
        self.bench.phase(f"split-h2-tls-c{connections} measurement", time.monotonic() - started)
        t0 = load["t0_monotonic"]
        hold_samples = [s for s in data["samples"] if s["t"] >= t0 + a.ramp + 5.0]
        counts = hold_samples[0]["established"] if hold_samples else {}
        return {
            "load": {"h2load_exit": load["exit_status"], "h2load_output": load["output"][-1500:]},
            "checks": {"established_in_hold": {str(k): v for k, v in counts.items()}},
            "raw": {"load": load, "samples": data["samples"], "ramp": a.ramp},
        }

    def variant(self, name: str, config: str) -> dict[str, Any]:
        a = self.args
        if name == "h1-plain":
            self.add_fixture(self.fixture(config))
        self.restart_nginx()
        self.restart_backend()
        offset = self.log_offset()
        if name in ("h1-tls", "h1-tls-full"):
            # bench.py resumes TLS sessions unless its no_tls_resume
            self.bench.args.no_tls_resume = name == "h1-tls-full"
            try:
                out = self.sseprobe(name, NGINX, [443, BACKEND_PORT])
            finally:
                self.bench.args.no_tls_resume = False
        elif name == "h1-plain":
            try:
                target = [f"http://127.0.0.1:{a.plain_port}{SSE_PATH}"]
                out = self.sseprobe(name, target, [a.plain_port, BACKEND_PORT])
            finally:
                self.remove_fixture()
        elif name.startswith("h2-tls-c"):
            limit = int(directive(config, "http2_max_concurrent_streams") or 128)
            out = self.h2(int(name.removeprefix("h2-tls-c")), limit)
        else:
            out = self.sseprobe(name, DIRECT, [BACKEND_PORT])
        time.sleep(1.0)  # nginx writes a stream's log line when it ends
        if name != "direct":
            out["checks"]["access_log"] = self.log_check(offset, a.hold)
        raw = out.pop("raw")
        plateau = (a.ramp + 2.0, raw["load"]["elapsed_s"] - 1.0)
        out["resources"] = report._memory(raw, plateau)  # REPORT.md's figures, the same code
        out["memory_series"] = [
            [
                round(s["t"] - raw["load"]["t0_monotonic"], 1),
                *(round(report._group(s, g, "pss_kb")) for g in ("nginx", "backend")),
            ]
            for s in raw["samples"]
        ]
        res = out["resources"]
        log(
            f"{name}: open {res.get('open_streams')}, nginx"
            f" {res.get('nginx', {}).get('pss_per_stream_kb')} KB/stream, backend"
            f" {res.get('backend', {}).get('pss_per_stream_kb')} KB/stream, checks"
            f" {json.dumps(out['checks'])}"
        )
        return out

    def main(self) -> int:
        a = self.args
        wall = time.monotonic()
        if not a.no_deploy:
            self.bench.deploy()
        self.bench.naive("stop")
        self.bench.install_probe()
        self.remove_fixture()  # a fixture left by an interrupted run
        self.bench.podman("systemctl", "restart", "nginx.service")
        config = self.bench.podman("nginx", "-T")
        _, self.access_log = sse_location(config)
        wanted = variant_names(a.variants, a.h2_connections)
        if any(name.startswith("h2-tls") for name in wanted):
            self.bench.podman(
                "sh", "-c", "command -v h2load >/dev/null || { apt-get update -qq &&"
                " DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client; }",
            )  # fmt: skip
        runs: dict[str, Any] = {}
        for name in wanted:
            runs[name] = self.variant(name, config)
            (LOGS / "nginx-split-partial.json").write_text(json.dumps(runs, indent=1) + "\n")
        host = self.bench.host_info()
        h2load = ""
        if any(name.startswith("h2-tls") for name in wanted):
            h2load = self.sh("h2load --version").strip().splitlines()[0]
        meta = {
            "host": host,
            "h2load": h2load,
            "streams": a.streams,
            "ramp_s": a.ramp,
            "hold_s": a.hold,
            "plain_port": a.plain_port,
            "nginx": {k: directive(config, k) for k in NGINX_KEYS},
            "http2_on": bool(re.search(r"^\s*http2 on;|listen \S+ ssl http2", config, re.M)),
            "fixture": self.fixture(config),
        }
        if not a.keep:
            self.bench.phase(
                "molecule destroy",
                self.bench.run("molecule-destroy", ["molecule", "destroy", "-s", SCENARIO]),
            )
        meta["phases_s"] = {**self.bench.phases, "total": round(time.monotonic() - wall, 1)}
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        results = {"meta": meta, "variants": runs}
        path = out / "nginx_split.json"
        if a.merge and path.is_file():
            # this run's variants added to the file's (a name already there gets the run's
            # number: `h1-tls run 2`); the file's meta kept, this run's in extra_runs
            old = json.loads(path.read_text())
            extras = old["meta"].setdefault("extra_runs", [])
            label = f"run {len(extras) + 2}"
            runs = {(f"{k} {label}" if k in old["variants"] else k): v for k, v in runs.items()}
            extras.append({**meta, "label": label, "variants": list(runs), "fixture": None})
            results = {"meta": old["meta"], "variants": {**old["variants"], **runs}}
        path.write_text(json.dumps(results, indent=1) + "\n")
        write(results, out)
        total = meta["phases_s"]["total"]
        log(f"wrote {out}/nginx_split.md and nginx_split.json; total {total:.0f} s")
        return 0


def write(results: dict[str, Any], out: Path) -> None:
    """nginx_split.md: the table and method, and the hand-written part kept (FINDINGS on)."""
    md = out / "nginx_split.md"
    kept = md.read_text().partition(FINDINGS)[1:] if md.is_file() else ("", "")
    md.write_text(render(results) + ("\n" + "".join(kept) if kept[0] else ""))


def variant_names(variants: str, h2_connections: str) -> list[str]:
    """The runs, in order: h2-tls becomes one h2-tls-cN per --h2-connections value."""
    names: list[str] = []
    for name in variants.split(","):
        if name == "h2-tls":
            names += [f"h2-tls-c{int(c)}" for c in h2_connections.split(",")]
        else:
            names.append(name)
    return names


def render(r: dict[str, Any]) -> str:
    m = r["meta"]
    n = m["nginx"]
    lines = [
        "# nginx's memory per SSE stream, split (bench/nginx_split.py)",
        "",
        f"{m['streams']:,} streams per variant held {m['hold_s']:g} s (opened over"
        f" {m['ramp_s']:g} s) inside the `bench` molecule container ({m['host']['nginx']},"
        f" worker_processes {n['worker_processes']}, ssl_buffer_size {n['ssl_buffer_size']},"
        f" proxy_buffer_size {n['proxy_buffer_size']}, http2_max_concurrent_streams"
        f" {n['http2_max_concurrent_streams']}; {m['host']['cpus']} cores,"
        f" {m['host']['date']}). Each variant starts from a restarted nginx and a restarted"
        " backend. Per stream: PSS growth (median over the steady hold - idle before the"
        " load) / streams open, as REPORT.md.",
        "",
        "| variant | client connections to nginx | streams open | nginx -> backend connections"
        " | nginx KB/stream | backend KB/stream | nginx + backend KB/stream | nginx fds per"
        " worker | nginx log: 200 held >= hold / SSE lines | nginx PSS idle -> steady MB |",
        "| --- |" + " --- |" * 9,
    ]
    for name, v in r["variants"].items():
        res = v["resources"]
        ng, be = res.get("nginx", {}), res.get("backend", {})
        est = v["checks"].get("established_in_hold", {})
        acc = v["checks"].get("access_log")
        both = res.get("nginx_plus_backend_pss_per_stream_kb", "-")
        fds = ", ".join(map(str, res.get("nginx_worker_fds_max", [])))
        held = f"{acc['held_200_for_hold']:,} / {acc['sse_requests']:,}" if acc else "-"
        conns = f"{est.get('443' if 'tls' in name else str(m['plain_port']), 0):,}"
        upstream = f"{est.get(str(BACKEND_PORT), 0):,}"
        if name == "direct":  # no nginx in the path: the clients are the backend's
            conns, upstream, ng, both, fds = upstream, "-", {}, "-", "-"
        idle = f"{ng['idle_pss_kb'] / 1024:.1f} -> {ng['steady_pss_kb'] / 1024:.1f}" if ng else "-"
        lines.append(
            f"| {name} | {conns} | {res.get('open_streams', 0):,.0f} | {upstream}"
            f" | {ng.get('pss_per_stream_kb', '-')} | {be.get('pss_per_stream_kb', '-')}"
            f" | {both} | {fds} | {held} | {idle} |"
        )
    for extra in m.get("extra_runs", []):
        lines += [
            "",
            f"Rows {', '.join(extra['variants'])}: a later run ({extra['label']}, its own"
            f" deployment, {extra['host']['date']}), merged in (`--merge`).",
        ]
    lines += [
        "",
        "## Method",
        "",
        "- h1-tls: `sseprobe load --tls-resume` against https://localhost/notify/events"
        " (`--resolve localhost:443:127.0.0.1`, the role's CA, `--keepalive-interval 5`),"
        " as bench.py's hold (bench.py's `Bench.measure`, runner.py's samples).",
        f"- h1-plain: the same load, plain HTTP, against a test-fixture server on"
        f" 127.0.0.1:{m['plain_port']} whose only location is the role's rendered"
        " `location /notify/events` copied from `nginx -T` (same upstream, proxy_buffer_size,"
        " headers; file in nginx_split.json `meta.fixture`), removed right after.",
        f"- h2-tls-cN: `{m['h2load'] or 'h2load'}` with N connections,"
        " the streams spread evenly over them (-m), the connections opened evenly"
        " over the ramp (`-r`, `--rate-period`), stopped (SIGINT) after ramp + hold;"
        " memory sampled by runner.py's sample(). Streams open = nginx's ESTABLISHED"
        " connections to the backend (one per proxied stream; a refused HTTP/2 stream makes"
        " none).",
        "- direct: the same sseprobe load straight to http://127.0.0.1:8000 (no nginx).",
        "- h1-tls-full: h1-tls without `--tls-resume`: a full handshake for every stream.",
        "- Checks that the streams were really held: the ESTABLISHED connections counted in"
        " /proc/net/tcp 5 s after the ramp (per remote port: 443 / the fixture port = client"
        " connections to nginx, 8000 = connections to the backend), and nginx's access-log"
        " lines of the variant (role's `sse_timed` format): SSE requests answered 200 whose"
        " request time was at least the hold.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--ramp", type=float, default=20.0, help="seconds to open them over")
    parser.add_argument("--hold", type=float, default=40.0, help="seconds to hold them")
    parser.add_argument("--variants", default=VARIANTS, help=f"default: {VARIANTS}")
    parser.add_argument(
        "--h2-connections",
        default="20",
        help="h2-tls: one run per value, comma-separated (default: 20)",
    )
    parser.add_argument("--plain-port", type=int, default=8081, help="the fixture's port")
    parser.add_argument("--no-deploy", action="store_true", help="use the running container")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--render", action="store_true", help="only re-render the .md (--out)")
    parser.add_argument(
        "--merge", action="store_true", help="add this run's variants to --out's nginx_split.json"
    )
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - set(KNOWN.split(","))
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {KNOWN}")
    if not all(c.isdigit() and int(c) > 0 for c in args.h2_connections.split(",")):
        parser.error("--h2-connections: positive integers, comma-separated")
    if args.render:
        write(json.loads((Path(args.out) / "nginx_split.json").read_text()), Path(args.out))
        return 0
    return Split(args).main()


if __name__ == "__main__":
    sys.exit(main())
