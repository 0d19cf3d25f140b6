"""A rolling release over two backends, watched from inside the proxy.

The inputs are unusual but valid: each backend binds the IPv6 wildcard `[::]:8000` (the
proxy reaches it over IPv4 by name, the direct check at [::1]), and the batches are
`sse_release_serial=50%` (two batches of one backend).

Six streams are held through nginx (files/hold_streams.py in the proxy container, each
reconnecting like an EventSource: after the server's retry: delay, with Last-Event-ID)
while an event is published through nginx every 0.5 s (conftest.PUBLISH_INTERVAL), and
`site.yml` releases a second version. nginx's access log says which backend served each
request.

Each backend forwards what is published to it to the other (sse_backend_peers), with
the id it gave the event, so every stream gets every event whichever backend it is on,
and a stream that moves resumes on the other backend by Last-Event-ID. Asserted:

- a stream ends only when the backend it is connected to restarts: the streams on the
  backend of the other batch are never interrupted;
- every reconnect lands on the other backend (the restarting one is drained), answers 200
  with :ok, carries Last-Event-ID (the last id the stream received) and keeps receiving;
- no event lost: every stream received every event published (and accepted) between its
  first :ok and its end, under the id the publish got, across all its reconnects;
- every publish through nginx is accepted (202) during the whole release.

Then a broken release (version 3.0.0 whose environment turns keepalives off; nothing is
published, so its streams are idle and the keepalive check sees it) fails the first
batch's direct check: that batch goes back to 2.0.0 and serves again, the second
backend is never touched (same main process, no 3.0.0 installed, its streams never
interrupted), no stream ever reaches 3.0.0, and the run fails naming the failed check.

Last, playbooks/rollback.yml: a target that is not installed is refused before anything
changes; back one release (to 1.0.0); then to a named one (2.0.0); each run verifies.
"""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import (
    BACKENDS,
    PROXY,
    PUBLISH_INTERVAL,
    SERIAL,
    UNIT,
    UPSTREAM_CONF,
    USER,
    Held,
    Holder,
    batches,
    open_stream,
    podman_exec,
)

FIRST, SECOND = BACKENDS
# a stream ends within this window around its backend's new main process start: the
# stop (the reference app ends its streams at once on SIGTERM) and the start
END_BEFORE_START, END_AFTER_START = 20, 2


def drained() -> list[str]:
    """The upstream entries nginx has marked down."""
    return re.findall(r"server (\S+) down;", podman_exec(PROXY, "cat", UPSTREAM_CONF))


def other(name: str) -> str:
    return SECOND if name == FIRST else FIRST


def ended_early(held: Held) -> list[dict[str, Any]]:
    """Connections that ended before the holder stopped them."""
    return [c for c in held.connections if c["end"] != "stopped"]


def assert_every_request_served(held: Held) -> None:
    failed = [p for p in held.publishes if p["status"] != 202]
    assert not failed, f"publishes not accepted: {failed}\n{held.summary()}"
    bad = [c for c in held.connections if c["status"] != 200 or c["t_ok"] is None]
    assert not bad, f"connections without 200 and :ok: {bad}\n{held.summary()}"
    requests = held.connections + held.publishes
    unknown = [r["probe"] for r in requests if held.backend(r) not in BACKENDS]
    assert not unknown, f"requests missing from the access log: {unknown}"


def assert_reconnects_resume(held: Held, publishing: bool = True) -> None:
    """Each reconnect: to the other backend, Last-Event-ID of the stream's last event,
    then events again."""
    for connections in held.streams().values():
        received: list[list[Any]] = []
        for before, after in zip(connections, connections[1:]):
            received += before["events"]
            assert held.backend(after) == other(held.backend(before)), held.summary()
            if received:
                assert after["last_event_id_sent"] == received[-1][0], (
                    f"{after['probe']} resumed from {after['last_event_id_sent']}, not from the"
                    f" last id it received ({received[-1][0]})\n{held.summary()}"
                )
            if publishing and after["t_end"] - after["t_ok"] > 3 * PUBLISH_INTERVAL:
                assert after["events"], f"{after['probe']} received nothing\n{held.summary()}"


def assert_no_event_lost(held: Held) -> None:
    """Every stream got every accepted event published while it was held, under the
    publish's id, whichever backends its connections were on."""
    accepted = {p["seq"]: p for p in held.publishes if p["status"] == 202}
    assert len(accepted) >= 20, f"too few events published to judge: {len(accepted)}"
    for number, connections in held.streams().items():
        start, end = connections[0]["t_ok"], connections[-1]["t_end"]
        due = {seq for seq, p in accepted.items() if p["t_sent"] > start and p["t_resp"] < end}
        got = {seq: event_id for c in connections for event_id, seq, _ in c["events"]}
        missing = sorted(due - set(got))
        assert not missing, f"stream {number} lost events {missing}\n{held.summary()}"
        wrong = {s: i for s, i in got.items() if s in accepted and i != str(accepted[s]["id"])}
        assert not wrong, f"stream {number}: events under another id {wrong}\n{held.summary()}"
        received = sum(len(c["events"]) for c in connections)
        print(f"    stream {number}: {len(due)} due, {received} received, {len(connections)} conns")


def listeners(name: str, family: str) -> list[str]:
    """Local addresses of the sockets listening on port 8000 in one address family."""
    # columns: State Recv-Q Send-Q Local Peer
    return podman_exec(name, "ss", "-Hltn", "-f", family, "sport = :8000").split()[3::5]


def test_backends_listen_on_ipv6() -> None:
    """sse_backend_bind "[::]:8000": the socket unit listens on the IPv6 wildcard only (one
    socket, which takes the proxy's IPv4 connections too: bindv6only is 0)."""
    for name in BACKENDS:
        uid = podman_exec(name, "id", "-u", USER).strip()
        listen = podman_exec(
            name,
            "runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
            "systemctl", "--user", "show", "-p", "Listen", UNIT.replace(".service", ".socket"),
        )  # fmt: skip
        assert listen.strip() == "Listen=[::]:8000 (Stream)", (name, listen)
        ipv6, ipv4 = listeners(name, "inet6"), listeners(name, "inet")
        assert ipv6 in (["[::]:8000"], ["*:8000"]), f"{name}: IPv6 listeners {ipv6}"
        assert ipv4 == [], f"{name} listens on IPv4 too: {ipv4}"
        assert podman_exec(name, "cat", "/proc/sys/net/ipv6/bindv6only").strip() == "0"


def test_rolling_release_keeps_streams(playbook, backends) -> None:
    before = backends()
    assert {b.version for b in before.values()} == {"1.0.0"}, before

    with Holder("release") as holder:
        proc = playbook(
            "site.yml", "-e", "sse_backend_version=2.0.0", "-e", f"sse_release_serial={SERIAL}"
        )
        held = holder.finish()
    # 50% of two backends: two batches of one, in inventory order
    assert batches(proc.stdout) == [[FIRST], [SECOND]], proc.stdout[-3000:]
    after = backends()
    print(held.summary())

    for name in BACKENDS:
        assert after[name].version == "2.0.0" and after[name].current == "2.0.0", after[name]
        assert after[name].pid != before[name].pid, f"{name} was not restarted"
    assert after[FIRST].started < after[SECOND].started, "the batches ran out of order"
    assert drained() == [], "a backend stayed drained"

    first_connections = [c for c in held.connections if c["conn"] == 1]
    on = {name: [c for c in first_connections if held.backend(c) == name] for name in BACKENDS}
    assert on[FIRST] and on[SECOND], f"nginx put the streams on one backend\n{held.summary()}"
    assert_every_request_served(held)

    # a connection ends only when its own backend restarts
    for connection in ended_early(held):
        backend = held.backend(connection)
        start = after[backend].started
        assert start - END_BEFORE_START <= connection["t_end"] <= start + END_AFTER_START, (
            f"{connection['probe']} on {backend} ended at {connection['t_end']:.1f}, not when"
            f" {backend} restarted ({start})\n{held.summary()}"
        )
        assert connection["end"] == "eof", held.summary()
    # the streams on the second backend were held across the first batch's restart: open
    # before the first backend cut its own streams, still open after it started again
    # (measured from the cut, not from a fixed margin: a faster deploy restarts sooner)
    first_cut = min(c["t_end"] for c in on[FIRST])
    held_across = [
        c
        for c in on[SECOND]
        if c["t_ok"] < first_cut and c["t_end"] > after[FIRST].started + END_AFTER_START
    ]
    assert len(held_across) == len(on[SECOND]), held.summary()
    # a stream moved once per restart of the backend it was on
    for connections in held.streams().values():
        restarted = [held.backend(c) for c in connections[:-1]]
        assert len(restarted) == len(set(restarted)), held.summary()
    assert_reconnects_resume(held)
    assert_no_event_lost(held)
    assert {c["version"] for c in held.connections if c["end"] == "stopped"} == {"2.0.0"}


def test_broken_release_is_rolled_back(playbook, backends) -> None:
    before = backends()
    assert {b.version for b in before.values()} == {"2.0.0"}, before
    broken = json.dumps({"sse_backend_env": {"SSE_KEEPALIVE_INTERVAL": "3600"}})

    with Holder("broken", publish_interval=0) as holder:
        proc = playbook(
            "site.yml", "-e", "sse_backend_version=3.0.0", "-e", broken,
            "-e", f"sse_release_serial={SERIAL}", check=False,
        )  # fmt: skip
        held = holder.finish()
    after = backends()
    print(held.summary())
    output = " ".join(proc.stdout.split())

    # the run fails, naming the failed check and what it went back to
    assert proc.returncode != 0, "site.yml passed with a release that sends no keepalives"
    assert f"Release 3.0.0 failed on {FIRST}" in output, output[-3000:]
    assert f"SSE verification failed on {FIRST}: keepalive:" in output, output[-3000:]
    # the direct check reached the IPv6 wildcard bind at the IPv6 loopback
    assert "the direct check at http://[::1]:8000/notify/events failed" in output, output[-3000:]
    assert batches(proc.stdout) == [[FIRST]], "a batch after the failed one started"
    assert "went back to release 2.0.0, which passed the direct check" in output, output[-3000:]
    # the second batch never started: same process, nothing of 3.0.0 on it
    assert after[SECOND] == before[SECOND], (before[SECOND], after[SECOND])
    assert "3.0.0" not in after[SECOND].releases
    # the first batch runs 2.0.0 again, with the environment it had, and serves
    assert after[FIRST].pid != before[FIRST].pid
    assert after[FIRST].active == "active"
    assert (after[FIRST].version, after[FIRST].current) == ("2.0.0", "2.0.0"), after[FIRST]
    assert after[FIRST].keepalive_lines == before[FIRST].keepalive_lines, after[FIRST]
    assert "3.0.0" in after[FIRST].releases  # installed, not current
    assert drained() == [], "the first batch stayed drained"

    # no stream ever reached 3.0.0; the second backend's streams were never interrupted
    assert_every_request_served(held)
    assert "3.0.0" not in {c["version"] for c in held.connections}, held.summary()
    assert "3.0.0" not in {p["version"] for p in held.publishes}, held.summary()
    for connection in ended_early(held):
        assert held.backend(connection) == FIRST, held.summary()
    assert_reconnects_resume(held, publishing=False)

    # and new streams through the proxy open on 2.0.0 (round robin: both backends)
    assert {open_stream() for _ in range(4)} == {"200 2.0.0 :ok"}


def test_rollback_back_one_then_to_a_named_release(playbook, backends) -> None:
    """playbooks/rollback.yml: a release that is not installed is refused before anything
    changes, naming the variable; back one release; then to a named one; each verified."""
    before = backends()
    assert {(b.version, b.current) for b in before.values()} == {("2.0.0", "2.0.0")}, before

    proc = playbook("playbooks/rollback.yml", "-e", "sse_backend_rollback_to=9.9.9", check=False)
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0, "a rollback to a release that is not installed passed"
    assert "sse_backend_rollback_to: release 9.9.9 is not installed" in output, output[-3000:]
    assert backends() == before, "a refused rollback changed a backend"

    playbook("playbooks/rollback.yml")  # back one: the release installed before 2.0.0
    back = backends()
    for name in BACKENDS:
        assert (back[name].version, back[name].current) == ("1.0.0", "1.0.0"), back[name]
        assert back[name].pid != before[name].pid and back[name].active == "active"
    assert {open_stream() for _ in range(4)} == {"200 1.0.0 :ok"}

    playbook("playbooks/rollback.yml", "-e", "sse_backend_rollback_to=2.0.0")
    again = backends()
    for name in BACKENDS:
        assert (again[name].version, again[name].current) == ("2.0.0", "2.0.0"), again[name]
    assert {open_stream() for _ in range(4)} == {"200 2.0.0 :ok"}
