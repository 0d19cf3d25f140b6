"""A rolling release over two backends of two workers each, and broker restarts, watched
from inside the proxy.

The inputs are unusual but valid: each backend binds the IPv6 wildcard `[::]:8000` (the
proxy reaches it over IPv4 by name, the direct check at [::1]), and the batches are
`sse_release_serial=50%` (two batches of one backend). The events are shared through the
broker (Redis on the proxy's container, role sse_broker; sse_backend_broker_url), so each
of the four Gunicorn workers serves the same events in the same order.

Six streams are held through nginx (files/hold_streams.py in the proxy container, each
reconnecting like an EventSource: after the server's retry: delay, with Last-Event-ID)
while one event is published every 0.2 s (conftest.PUBLISH_INTERVAL) straight to the
backends' own /notify/publish, alternating between them (a 503 is published again after
its Retry-After). nginx's access log says which backend served each stream. Asserted,
for every stream across all its reconnects (assert_exactly_once_in_order):

- every event accepted (202) between the stream's first :ok and its end arrived;
- exactly once (no id twice, no publish's seq twice: a publish answered 503 and then
  retried was not also appended);
- in one global order: ids strictly increasing, each the id its publish was given (so
  the order of the publish ids, whichever backend and worker took the publish).

The release (`site.yml` with a second version): a stream ends only when the backend it
is on restarts; every reconnect lands on the other backend, carries Last-Event-ID and
receives again; every event is accepted, both backends took publishes.

The broker restarts under the same load (`systemctl restart redis-server`, then a stop,
a 5 s outage and a start): the streams stay open (one connection each, keepalives on
time all through), publishes during the outage are answered 503 with Retry-After (counted)
and accepted when published again after it, events published after it arrive; the same
exactly-once order.

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
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from conftest import (
    BACKENDS,
    BROKER_SERVICE,
    KEEPALIVE_INTERVAL,
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
# the broker's outage in the restart test: several keepalive intervals, many publishes
OUTAGE = 5.0
# longest silence on a held stream: a keepalive is due every interval; 1.5 s of slack
# for a loaded machine
MAX_SILENCE = KEEPALIVE_INTERVAL + 1.5
WORKERS = 2  # sse_backend_workers, molecule.yml


def drained() -> list[str]:
    """The upstream entries nginx has marked down."""
    return re.findall(r"server (\S+) down;", podman_exec(PROXY, "cat", UPSTREAM_CONF))


def other(name: str) -> str:
    return SECOND if name == FIRST else FIRST


def ended_early(held: Held) -> list[dict[str, Any]]:
    """Connections that ended before the holder stopped them."""
    return [c for c in held.connections if c["end"] != "stopped"]


def assert_every_stream_served(held: Held) -> None:
    bad = [c for c in held.connections if c["status"] != 200 or c["t_ok"] is None]
    assert not bad, f"connections without 200 and :ok: {bad}\n{held.summary()}"
    unknown = [c["probe"] for c in held.connections if held.backend(c) not in BACKENDS]
    assert not unknown, f"streams missing from the access log: {unknown}"


def assert_every_event_accepted(
    held: Held, allowed: frozenset[int | None] = frozenset({202})
) -> None:
    """Every event published (each seq) was accepted once in the end, by the backend it
    was sent to; no attempt was answered otherwise than `allowed` (None: refused before
    the request left, retried), none went unanswered after it was sent."""
    seqs = {p["seq"] for p in held.publishes}
    assert seqs == set(range(1, max(seqs, default=0) + 1)), "the publisher skipped an event"
    accepted = Counter(p["seq"] for p in held.publishes if p["status"] == 202)
    twice = sorted(s for s, n in accepted.items() if n > 1)
    assert not twice, f"events accepted twice: {twice}"
    never = sorted(seqs - set(accepted))
    assert not never, f"events never accepted: {never}\n{held.summary()}"
    odd = [
        p for p in held.publishes if p["status"] not in allowed or (p["sent"] and not p["status"])
    ]
    assert not odd, f"publish attempts answered otherwise: {odd[:5]}\n{held.summary()}"
    taken = Counter(held.backend(p) for p in held.accepted().values())
    assert set(taken) == set(BACKENDS), f"publishes accepted per backend: {taken}"


def assert_exactly_once_in_order(held: Held) -> None:
    """Every stream, across its reconnects: every accepted event published while it was
    held, exactly once, in the order of the ids the publishes got (strictly increasing)."""
    accepted = held.accepted()
    assert len(accepted) >= 40, f"too few events published to judge: {len(accepted)}"
    ids = [int(p["id"]) for p in accepted.values()]
    assert len(set(ids)) == len(ids), "two publishes were given the same id"
    for number, connections in held.streams().items():
        start, end = connections[0]["t_ok"], connections[-1]["t_end"]
        received = [(event_id, seq) for c in connections for event_id, seq, _ in c["events"]]
        numeric = [int(event_id) for event_id, _ in received]
        disorder = [(a, b) for a, b in zip(received, received[1:]) if int(b[0]) <= int(a[0])]
        assert not disorder, (
            f"stream {number}: ids not strictly increasing (an event twice or out of order):"
            f" {disorder[:5]}\n{held.summary()}"
        )
        twice = sorted(seq for seq, n in Counter(seq for _, seq in received).items() if n > 1)
        assert not twice, f"stream {number}: events received twice {twice}\n{held.summary()}"
        foreign = [(i, s) for i, s in received if s not in accepted or i != accepted[s]["id"]]
        assert not foreign, (
            f"stream {number}: events not as their publish was accepted (id, seq):"
            f" {foreign[:5]}\n{held.summary()}"
        )
        due = {s for s, p in accepted.items() if p["t_sent"] > start and p["t_resp"] < end}
        missing = sorted(due - {seq for _, seq in received})
        assert not missing, f"stream {number} lost events {missing}\n{held.summary()}"
        assert numeric == sorted(numeric)
        print(
            f"    stream {number}: {len(due)} due, {len(received)} received,"
            f" {len(connections)} connections"
        )


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
            if publishing and after["t_end"] - after["t_ok"] > 3 * PUBLISH_INTERVAL + 1:
                assert after["events"], f"{after['probe']} received nothing\n{held.summary()}"


@dataclass(frozen=True)
class Outage:
    """When the broker was stopped (the stop command ran from down to stopped) and
    started again (from start to up)."""

    down: float
    stopped: float
    start: float
    up: float


def assert_streams_kept(held: Held, outage: Outage) -> None:
    """The streams stayed open: one connection each, to the end, keepalives on time all
    through, some during the outage."""
    assert_every_stream_served(held)
    assert not ended_early(held), f"a stream ended before its end\n{held.summary()}"
    assert len(held.connections) == len(held.streams()), f"a stream reconnected\n{held.summary()}"
    for c in held.connections:
        assert c["max_silence"] <= MAX_SILENCE, (
            f"{c['probe']}: {c['max_silence']:.1f} s without a line\n{held.summary()}"
        )
        during = [t for t in c["keepalives"] if outage.stopped < t < outage.start]
        assert len(during) >= OUTAGE // KEEPALIVE_INTERVAL - 1, (
            f"{c['probe']}: {len(during)} keepalives during the outage\n{held.summary()}"
        )


def assert_refused_then_accepted(held: Held, outage: Outage) -> None:
    """Publishes during the outage: 503 with Retry-After, each sent again no sooner than
    it said, and accepted in the end."""
    refused = [p for p in held.publishes if p["status"] == 503]
    in_outage = [p for p in refused if outage.down <= p["t_sent"] <= outage.up]
    print(f"    503 answers: {len(refused)} ({len(in_outage)} sent during the outage)")
    assert len(in_outage) >= OUTAGE / PUBLISH_INTERVAL / 2, (
        f"{len(in_outage)} publishes answered 503 during the outage\n{held.summary()}"
    )
    for p in refused:
        assert p["retry_after"] is not None and int(p["retry_after"]) >= 1, p
        again = [
            q for q in held.publishes if q["seq"] == p["seq"] and q["attempt"] == p["attempt"] + 1
        ]
        assert again and again[0]["t_sent"] >= p["t_resp"] + int(p["retry_after"]) - 0.1, (
            p,
            again,
        )


def broker_pid() -> int:
    show = podman_exec(PROXY, "systemctl", "show", "-p", "MainPID", "--value", BROKER_SERVICE)
    return int(show.strip() or 0)


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
    for name, state in before.items():
        assert len(state.workers) == WORKERS, f"{name}: workers {state.workers}"

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
        assert len(after[name].workers) == WORKERS, after[name]
    assert after[FIRST].started < after[SECOND].started, "the batches ran out of order"
    assert drained() == [], "a backend stayed drained"

    first_connections = [c for c in held.connections if c["conn"] == 1]
    on = {name: [c for c in first_connections if held.backend(c) == name] for name in BACKENDS}
    assert on[FIRST] and on[SECOND], f"nginx put the streams on one backend\n{held.summary()}"
    assert_every_stream_served(held)
    # a publish sent to a backend while it restarts waits in its socket's queue (systemd
    # holds the socket): none is refused, every one accepted at the first attempt
    assert_every_event_accepted(held)

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
    assert_exactly_once_in_order(held)
    assert {c["version"] for c in held.connections if c["end"] == "stopped"} == {"2.0.0"}


def test_broker_restart_keeps_streams_and_order(backends) -> None:
    """The broker restarts under the same load: a plain restart, then a stop, OUTAGE
    seconds without it and a start. Streams stay open with their keepalives, publishes
    meanwhile get 503 + Retry-After and are accepted when sent again after it, and every
    stream gets every event exactly once, in order."""
    before = backends()
    first_pid = broker_pid()
    assert first_pid, f"{BROKER_SERVICE} is not running"

    with Holder("broker") as holder:
        time.sleep(3)
        podman_exec(PROXY, "systemctl", "restart", BROKER_SERVICE)
        restarted_pid = broker_pid()
        time.sleep(4)
        t_down = time.time()
        podman_exec(PROXY, "systemctl", "stop", BROKER_SERVICE)
        t_stopped = time.time()
        time.sleep(OUTAGE)
        t_start = time.time()
        podman_exec(PROXY, "systemctl", "start", BROKER_SERVICE)
        t_up = time.time()
        time.sleep(6)  # events after it
        held = holder.finish()
    after = backends()
    print(held.summary())
    print(f"    broker stopped {t_down:.2f}..{t_stopped:.2f}, started {t_start:.2f}..{t_up:.2f}")

    assert restarted_pid not in (0, first_pid), "the broker was not restarted"
    assert broker_pid() not in (0, restarted_pid), "the broker did not start again"
    assert after == before, "a backend restarted with its broker"

    outage = Outage(t_down, t_stopped, t_start, t_up)
    assert_streams_kept(held, outage)
    assert_refused_then_accepted(held, outage)
    assert_every_event_accepted(held, allowed=frozenset({202, 503}))
    accepted = held.accepted()
    retried = sorted(s for s, p in accepted.items() if p["attempt"] > 1)
    assert retried, "no publish was accepted on a second attempt"
    after_it = [s for s, p in accepted.items() if p["t_sent"] > t_up + 1]
    assert len(after_it) >= 3 / PUBLISH_INTERVAL, f"events after the outage: {after_it}"
    print(f"    {len(retried)} events accepted when published again, {len(after_it)} after it")
    assert_exactly_once_in_order(held)


def test_verification_names_the_broker_while_it_is_down(playbook, backends) -> None:
    """verify.yml with the broker stopped: streams through the proxy still open and keep
    their keepalives, but each backend's /healthz says broker_down, so the run fails
    naming the check `broker` on both backends (never printing the broker's URL). The
    tests after this one verify again with the broker back (their runs pass)."""
    before = backends()
    podman_exec(PROXY, "systemctl", "stop", BROKER_SERVICE)
    try:
        proc = playbook("playbooks/verify.yml", "-e", "sse_backend_version=2.0.0", check=False)
    finally:
        podman_exec(PROXY, "systemctl", "start", BROKER_SERVICE)
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0, "verify.yml passed with the broker stopped"
    for name in BACKENDS:
        failed = re.search(rf"SSE verification failed on {name}: (.*?)\"", output)
        assert failed, output[-3000:]
        # broker, and only broker: the release check (same version) and the stream pass
        assert failed.group(1).startswith("broker: the backend's event broker is down"), failed
        assert " | " not in failed.group(1), failed
    assert "redis://" not in output, "the broker URL was printed"
    assert "molecule-broker-password" not in output, "the broker password was printed"
    assert backends() == before, "a backend restarted"


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
    assert after[SECOND] == before[SECOND], (before[SECOND], after[SECOND])  # workers too
    assert "3.0.0" not in after[SECOND].releases
    # the first batch runs 2.0.0 again, with the environment it had, and serves
    assert after[FIRST].pid != before[FIRST].pid
    assert after[FIRST].active == "active"
    assert (after[FIRST].version, after[FIRST].current) == ("2.0.0", "2.0.0"), after[FIRST]
    assert after[FIRST].keepalive_lines == before[FIRST].keepalive_lines, after[FIRST]
    assert "3.0.0" in after[FIRST].releases  # installed, not current
    assert drained() == [], "the first batch stayed drained"

    # no stream ever reached 3.0.0; the second backend's streams were never interrupted
    assert_every_stream_served(held)
    assert "3.0.0" not in {c["version"] for c in held.connections}, held.summary()
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
