"""Backends behind one upstream share their events (SSE_PEERS): every stream gets every
event, and a stream that moves to another backend resumes there by Last-Event-ID."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import KEEPALIVE
from sse_app.broker import Broker
from sse_app.peers import EVENT_ID_HEADER
from sse_helpers import HOST, TOKEN, EventStream, Gunicorn, publish, request, server_env


class Capture(ThreadingHTTPServer):
    """A stand-in peer that records what it is sent (answers 202)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.received.append((dict(self.headers), body))
                server.got.set()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((HOST, 0), Handler)


def _gunicorn(tmp: Path, name: str, peers: str = "") -> Gunicorn:
    env = server_env(
        SSE_PUBLISH_TOKEN=TOKEN, SSE_KEEPALIVE_INTERVAL=str(KEEPALIVE), SSE_PEERS=peers
    )
    return Gunicorn.bound(env, tmp / f"{name}.log")


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    """Backend b, and backend a that forwards to b (one way: b's port is known first)."""
    b = _gunicorn(tmp_path, "b")
    a = _gunicorn(tmp_path, "a", peers=f"{HOST}:{b.port}")
    yield a, b
    for server in (a, b):
        server.stop()


def test_publish_is_forwarded_with_its_id_and_the_token(tmp_path: Path, capture: Capture) -> None:
    server = _gunicorn(tmp_path, "origin", peers=f"{HOST}:{capture.server_address[1]}")
    try:
        answer = publish(server.port, {"n": 1}, event="tick")
        assert answer.status == 202
        assert capture.got.wait(5), f"nothing forwarded:\n{server.log()}"
        headers, body = capture.received[0]
        assert headers[EVENT_ID_HEADER] == str(answer.json()["id"])
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert body == b'{"data": {"n": 1}, "event": "tick"}'

        # an event a peer forwarded is not forwarded again (no loops between peers)
        capture.got.clear()
        forwarded = request(
            server.port,
            "POST",
            "/notify/publish",
            b'{"data": "from a peer"}',
            {"Authorization": f"Bearer {TOKEN}", EVENT_ID_HEADER: "123"},
        )
        assert (forwarded.status, forwarded.json()["id"]) == (202, 123)
        assert not capture.got.wait(1.0), capture.received[1:]
    finally:
        server.stop()


def test_a_peer_down_never_fails_the_publish(tmp_path: Path) -> None:
    server = _gunicorn(tmp_path, "lonely", peers=f"{HOST}:9")  # discard port: refused
    try:
        assert publish(server.port, "still accepted").status == 202
    finally:
        server.stop()


def test_forwarded_id_needs_the_token_and_a_number(pair: tuple[Gunicorn, Gunicorn]) -> None:
    _, b = pair
    body = b'{"data": "x"}'
    no_token = request(b.port, "POST", "/notify/publish", body, {EVENT_ID_HEADER: "5"})
    assert no_token.status == 401
    bad_id = request(
        b.port,
        "POST",
        "/notify/publish",
        body,
        {"Authorization": f"Bearer {TOKEN}", EVENT_ID_HEADER: "5; DROP"},
    )
    assert bad_id.status == 400 and EVENT_ID_HEADER in bad_id.json()["error"]


def test_stream_on_the_peer_gets_the_event_and_resumes_there(
    pair: tuple[Gunicorn, Gunicorn],
) -> None:
    a, b = pair
    with EventStream(b.port).open() as on_b:
        ids = [publish(a.port, f"via a {n}").json()["id"] for n in range(3)]
        got = [on_b.next_event() for _ in ids]
        assert [(e.id, e.data) for e in got] == [(i, f"via a {n}") for n, i in enumerate(ids)]

    # a client that saw only the first event on a resumes on b with the rest, in order
    with EventStream(b.port, headers={"Last-Event-ID": str(ids[0])}).open() as moved:
        assert [e.id for e in moved.events_until_keepalive()] == ids[1:]


def test_broker_keeps_forwarded_ids_ordered_and_delivers_once() -> None:
    broker = Broker(replay_size=10, queue_limit=10)
    sub = broker.subscribe()
    local, _ = broker.publish("local")
    late, delivered = broker.publish("forwarded late", event_id=local.id - 5)
    assert delivered == 1
    assert broker.publish("again", event_id=late.id)[1] == 0  # a duplicate forward
    newer, _ = broker.publish("peer ahead", event_id=local.id + 1_000_000)
    assert broker.publish("next local")[0].id > newer.id  # never behind an id seen
    replay = [e.data for e in broker.subscribe(0).backlog]
    assert replay == ["forwarded late", "local", "peer ahead", "next local"]  # by id
    assert [sub.pop().data for _ in range(4)] == [  # type: ignore[union-attr]
        "local",
        "forwarded late",
        "peer ahead",
        "next local",
    ]
    assert sub.pop() is None


class BannerThenHttp(threading.Thread):
    """A peer whose first `banners` connections get an SSH banner (not HTTP), then 202s."""

    def __init__(self, banners: int) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.banners = banners
        self.bodies: list[bytes] = []
        self.connections = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                body = _read_request_body(conn)  # then answer: http.client reads a status line
                if self.connections <= self.banners:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                    continue
                self.bodies.append(body)
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")


def _read_request_body(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += conn.recv(65536)
    return body


def test_forwarding_survives_a_peer_that_does_not_speak_http(tmp_path: Path) -> None:
    peer = BannerThenHttp(banners=2)
    peer.start()
    server = _gunicorn(tmp_path, "origin", peers=f"{HOST}:{peer.port}")
    try:
        first = publish(server.port, "one").json()["id"]
        second = publish(server.port, "two").json()["id"]
        deadline = time.monotonic() + 10
        while len(peer.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [json.loads(b)["data"] for b in peer.bodies] == ["one", "two"], server.log()
        stats = request(server.port, "GET", "/healthz").json()["peers"][f"{HOST}:{peer.port}"]
        assert stats["sent"] == 2 and stats["failed_attempts"] == 2 and stats["dropped"] == 0
        assert "BadStatusLine" in stats["last_error"], stats  # not an OSError: once fatal
        assert first < second
    finally:
        server.stop()
        peer.listener.close()


@pytest.mark.parametrize(
    "bad",
    [
        "9" * 5000,  # 5,000 digits: once a 500
        "100000000000000000000",  # 1e20: once shifted every later id
        "\u00b2",  # superscript two: str.isdigit() said yes, then int() raised (a 500)
        "-1",
        "",
        str(2**63),
        str((int(time.time()) + 3600) * 1_000_000),  # an hour ahead of this clock
    ],
)
def test_forwarded_id_must_be_a_bounded_number(pair: tuple[Gunicorn, Gunicorn], bad: str) -> None:
    _, b = pair
    answer = request(
        b.port,
        "POST",
        "/notify/publish",
        b'{"data": "x"}',
        {"Authorization": f"Bearer {TOKEN}", EVENT_ID_HEADER: bad},
    )
    assert answer.status == 400 and EVENT_ID_HEADER in answer.json()["error"], answer.body
    # and the next id this backend gives is still a present-day time
    assert publish(b.port, "after").json()["id"] < (int(time.time()) + 60) * 1_000_000
