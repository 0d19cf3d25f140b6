"""Fixtures for the cluster scenario: playbooks run from the controller against the
molecule inventory, the backends' state read with `podman exec`, and streams held
through the proxy from inside the proxy container while events are published straight
to the backends (files/hold_streams.py)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sse_testinfra import LOGS, run_playbook

PLAYBOOK_TIMEOUT = 900

PROXY = "cluster-proxy"
BACKENDS = ("cluster-backend1", "cluster-backend2")  # the batches, in inventory order
PUBLISH_TO = tuple(f"http://{name}:8000/notify/publish" for name in BACKENDS)
HOLDER = Path(__file__).resolve().parents[1] / "files" / "hold_streams.py"
HOLDER_ON_PROXY = "/opt/sse-cluster/hold_streams.py"
TOKEN = "molecule-publish-token"  # .config/molecule/config.yml
# Seconds between new events, each published straight to one backend, in turn (issue 17):
# many per reconnect window (retry 2 s) and per broker outage, so a lost, doubled or
# reordered event shows. The stream check counts events as activity.
PUBLISH_INTERVAL = 0.2
BROKER_SERVICE = "redis-server"  # Debian 12's (roles/sse_broker), on the proxy container
KEEPALIVE_INTERVAL = 2  # sse_backend_keepalive_interval, .config/molecule/config.yml
CACERT = "/etc/nginx/tls/sse-ca.crt"  # the local CA sse_nginx issues (self-signed mode)
ACCESS_LOG = "/var/log/nginx/sse_access.log"
UPSTREAM_CONF = "/etc/nginx/conf.d/sse.upstream.conf"
USER = "sse"
UNIT = "sse-backend.service"
BACKEND_ROOT = "/var/lib/sse/sse-backend"
ENV_FILE = "/var/lib/sse/.config/sse-backend/env"


# the batch size of every release run (an unusual but valid form: a percentage); converge
# sets the same in converge.yml
SERIAL = "50%"


def batches(output: str) -> list[list[str]]:
    """The batches a site.yml run released, in order: the backends each one named
    (sse_release's plan shows each batch as "Batch of N: a, b; ...")."""
    # whatever the callback's result format: the message's words, wherever lines wrap
    found = re.findall(r"Batch of (\d+): ([^;]*);", " ".join(output.split()))
    listed = [names.split(", ") for _, names in found]
    assert all(len(names) == int(count) for (count, _), names in zip(found, listed)), found
    return listed


def podman_exec(container: str, *cmd: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["podman", "exec", container, *cmd], capture_output=True, text=True, check=False
    )
    if check:
        assert proc.returncode == 0, f"{container}: {shlex.join(cmd)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a playbook of the project against the molecule inventory (sse_testinfra)."""

    def run(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_playbook(
            name, *args, check=check, timeout=PLAYBOOK_TIMEOUT, log_prefix="cluster"
        )

    return run


@dataclass(frozen=True)
class Backend:
    name: str
    active: str
    pid: int
    started: int  # ExecMainStartTimestamp, unix seconds
    version: str  # what GET /version answers
    current: str  # the release `current` points at
    releases: tuple[str, ...]
    keepalive_lines: tuple[str, ...]  # SSE_KEEPALIVE_INTERVAL lines of the environment file
    workers: tuple[int, ...]  # the Gunicorn workers: the main process's children


def backend_state(name: str) -> Backend:
    uid = podman_exec(name, "id", "-u", USER).strip()
    show = podman_exec(
        name,
        "runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
        "systemctl", "--user", "show", "--timestamp=unix",
        "-p", "ActiveState", "-p", "MainPID", "-p", "ExecMainStartTimestamp", UNIT,
    )  # fmt: skip
    state = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    version = podman_exec(
        name,
        "python3",
        "-c",
        "import json, urllib.request; "
        "print(json.load(urllib.request.urlopen('http://127.0.0.1:8000/version', timeout=5))"
        "['version'])",
        check=False,
    ).strip()
    env = podman_exec(name, "cat", ENV_FILE)
    pid = int(state.get("MainPID", "0") or 0)
    children = podman_exec(name, "cat", f"/proc/{pid}/task/{pid}/children", check=False)
    return Backend(
        name=name,
        active=state.get("ActiveState", ""),
        pid=pid,
        started=int(state.get("ExecMainStartTimestamp", "@0").lstrip("@") or 0),
        version=version,
        current=Path(podman_exec(name, "readlink", f"{BACKEND_ROOT}/current").strip()).name,
        releases=tuple(sorted(podman_exec(name, "ls", f"{BACKEND_ROOT}/releases").split())),
        keepalive_lines=tuple(
            line for line in env.splitlines() if line.startswith("SSE_KEEPALIVE_INTERVAL=")
        ),
        workers=tuple(sorted(int(child) for child in children.split())),
    )


@pytest.fixture
def backends() -> Callable[[], dict[str, Backend]]:
    return lambda: {name: backend_state(name) for name in BACKENDS}


@dataclass
class Held:
    """What hold_streams.py recorded, each stream's request tagged with the backend nginx
    chose (publishes name their backend themselves: `target`)."""

    connections: list[dict[str, Any]]
    publishes: list[dict[str, Any]]  # every attempt
    backend_of: dict[str, str] = field(default_factory=dict)  # probe id -> backend name

    def backend(self, record: dict[str, Any]) -> str:
        if "target" in record:
            return record["target"].split(":")[0]
        return self.backend_of.get(record["probe"], "?")

    def streams(self) -> dict[int, list[dict[str, Any]]]:
        by_stream: dict[int, list[dict[str, Any]]] = {}
        for connection in self.connections:
            by_stream.setdefault(connection["stream"], []).append(connection)
        return {k: sorted(v, key=lambda c: c["conn"]) for k, v in sorted(by_stream.items())}

    def accepted(self) -> dict[int, dict[str, Any]]:
        """seq -> the attempt that was accepted (202)."""
        return {p["seq"]: p for p in self.publishes if p["status"] == 202}

    def summary(self) -> str:
        lines = []
        for number, connections in self.streams().items():
            parts = [
                f"c{c['conn']}@{self.backend(c)}[{c['version']}] {len(c['events'])} events,"
                f" {len(c['keepalives'])} keepalives, end {c['end']}"
                + (f", Last-Event-ID {c['last_event_id_sent']}" if c["last_event_id_sent"] else "")
                for c in connections
            ]
            lines.append(f"    stream {number}: " + " | ".join(parts))
        outcomes: dict[str, int] = {}
        for p in self.publishes:
            key = f"{self.backend(p)} {p['status'] or ('refused' if not p['sent'] else 'error')}"
            outcomes[key] = outcomes.get(key, 0) + 1
        lines.append(f"    publish attempts: {dict(sorted(outcomes.items()))}")
        return "\n".join(lines)


class Holder:
    """hold_streams.py running in the proxy container for the duration of a `with`."""

    def __init__(
        self, prefix: str, streams: int = 6, publish_interval: float = PUBLISH_INTERVAL
    ) -> None:
        self.prefix = prefix
        self.streams = streams
        self.publish_interval = publish_interval  # 0: no publishing
        self.ready = f"/tmp/{prefix}.ready"
        self.stop = f"/tmp/{prefix}.stop"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Holder:
        podman_exec(PROXY, "mkdir", "-p", str(Path(HOLDER_ON_PROXY).parent))
        subprocess.run(["podman", "cp", str(HOLDER), f"{PROXY}:{HOLDER_ON_PROXY}"], check=True)
        podman_exec(PROXY, "rm", "-f", self.ready, self.stop)
        self.proc = subprocess.Popen(
            ["podman", "exec", PROXY, "python3", HOLDER_ON_PROXY,
             "--streams", str(self.streams), "--token", TOKEN, "--cacert", CACERT,
             "--prefix", self.prefix, "--ready", self.ready, "--stop", self.stop,
             "--publish-interval", str(self.publish_interval),
             *(arg for url in PUBLISH_TO for arg in ("--publish-to", url))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while subprocess.run(["podman", "exec", PROXY, "test", "-f", self.ready]).returncode:
            assert self.proc.poll() is None, f"hold_streams.py ended: {self.proc.stderr.read()}"
            assert time.monotonic() < deadline, "the streams did not all open within 60 s"
            time.sleep(0.5)
        return self

    def finish(self) -> Held:
        assert self.proc is not None
        podman_exec(PROXY, "touch", self.stop)
        out, err = self.proc.communicate(timeout=90)
        assert self.proc.returncode == 0, f"hold_streams.py failed: {err}"
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"cluster-held-{self.prefix}.json").write_text(out)
        data = json.loads(out)
        held = Held(data["connections"], data["publishes"])
        held.backend_of = upstream_of_requests(self.prefix, {c["probe"] for c in held.connections})
        return held

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            podman_exec(PROXY, "touch", self.stop, check=False)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def upstream_of_requests(prefix: str, probes: set[str]) -> dict[str, str]:
    """probe id -> the backend nginx sent the request to (its access log's uaddr)."""
    address = {}
    for name in BACKENDS:
        ip = podman_exec(PROXY, "getent", "hosts", name).split()[0]
        address[f"{ip}:8000"] = name
    found: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while True:  # nginx writes a stream's line when it ends, just after the client closed it
        log = podman_exec(PROXY, "grep", "-F", f'probe="{prefix}-', ACCESS_LOG, check=False)
        for line in log.splitlines():
            probe = re.search(r'probe="([^"]*)"', line)
            upstream = re.search(r'uaddr="([^"]*)"', line)
            if probe and upstream:
                last = upstream.group(1).split(",")[-1].strip()
                found[probe.group(1)] = address.get(last, last)
        if probes <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


OPEN_STREAM = """
import http.client, ssl
context = ssl.create_default_context(cafile=%r)
connection = http.client.HTTPSConnection("localhost", 443, context=context, timeout=10)
connection.request("GET", "/notify/events", headers={"Accept": "text/event-stream"})
response = connection.getresponse()
print(response.status, response.getheader("X-App-Version"), response.readline().decode().strip())
"""


def open_stream() -> str:
    """Open one stream through nginx from inside the proxy: "<status> <release> <first line>"."""
    return podman_exec(PROXY, "python3", "-c", OPEN_STREAM % CACERT).strip()
