"""Tests for `sseprobe load` (module_utils/sseprobe_load.py `load`, and the CLI subcommand).

The target is a small asyncio SSE broker in this file (127.0.0.1, ephemeral port, its own
event loop in a daemon thread): consecutive integer ids, a replay buffer for Last-Event-ID,
POST /publish, and per-request faults chosen by query string.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible_collections.sse.stack.plugins.module_utils import sseprobe_load
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli import load_summary
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_config import Endpoint
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_load import (
    ConfigError,
    LoadConfig,
    load,
    percentiles,
)

CLI = [sys.executable, "-m", "ansible_collections.sse.stack.plugins.module_utils.sseprobe_cli"]

INTERVAL = 0.2  # keepalive period of the test broker
RETRY_MS = 100


class Broker:
    """An SSE broker on its own loop; ``url(path)`` builds request URLs."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self.loop = asyncio.new_event_loop()
        self.next_id = 1000
        self.buffer: list[tuple[int, str]] = []
        self.queues: set[asyncio.Queue[tuple[int, str]]] = set()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.autopublish = 0.0  # seconds between self-published events; 0: none
        self.skip_ids = 0  # the next publish skips this many ids (a new id space)
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}{path}"

    def __enter__(self) -> Broker:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._ssl)
        self.port = server.sockets[0].getsockname()[1]
        ticker = asyncio.create_task(self._ticker())
        self._ready.set()
        await self._stop.wait()
        ticker.cancel()
        server.close()
        await server.wait_closed() if sys.version_info < (3, 12) else None
        rest = asyncio.all_tasks() - {asyncio.current_task()}
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.autopublish or 0.05)
            if self.autopublish:
                self.publish("tick")

    def publish(self, data: str) -> int:
        self.next_id += self.skip_ids
        self.skip_ids = 0
        event = (self.next_id, data)
        self.next_id += 1
        self.buffer = [*self.buffer[-999:], event]
        for queue in self.queues:
            queue.put_nowait(event)
        return event[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            self.requests.append((target, headers))
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if method == "POST" and parts.path == "/publish":
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                payload = json.loads(body)
                if headers.get("authorization") != "Bearer sekret":
                    writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                else:
                    # the data relayed as the reference app does: JSON, compact
                    data = json.dumps(payload.get("data", "posted"), separators=(",", ":"))
                    reply = json.dumps({"id": self.publish(data)}).encode()
                    writer.write(
                        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reply), reply)
                    )
                await writer.drain()
            elif parts.path == "/events":
                await self._events(writer, headers, query)
            elif parts.path == "/silent":
                await asyncio.sleep(5)
            elif parts.path == "/status-503":
                writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the broker is closing (re-raising makes 3.11 log every cancelled handler)
        finally:
            writer.transport.abort()

    async def _events(
        self, writer: asyncio.StreamWriter, headers: dict[str, str], query: dict[str, str]
    ) -> None:
        def chunk(text: str) -> bytes:
            data = text.encode()
            return b"%x\r\n%s\r\n" % (len(data), data)

        last = headers.get("last-event-id")
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.queues.add(queue)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunk(":ok\n\n")
            )
            writer.write(chunk(f"retry: {RETRY_MS}\n\n"))
            sent = 0
            if last is not None and "noreplay" not in query:
                for event_id, data in self.buffer:
                    if event_id > int(last):
                        writer.write(chunk(f"id: {event_id}\ndata: {data}\n\n"))
                        sent = event_id
            # the first connection of a client (no Last-Event-ID) is cut after `drop` s
            drop_at = time.monotonic() + float(query["drop"]) if "drop" in query else None
            if last is not None:
                drop_at = None
            while True:
                await writer.drain()
                # ?idle=S: a longer keepalive period for this stream (a loaded machine
                # can stall the publisher past INTERVAL)
                timeout = float(query.get("idle", INTERVAL))
                if drop_at is not None:
                    timeout = min(timeout, drop_at - time.monotonic())
                    if timeout <= 0:
                        return  # abrupt: no terminating chunk
                try:
                    event_id, data = await asyncio.wait_for(queue.get(), timeout)
                except asyncio.TimeoutError:
                    if drop_at is None or time.monotonic() < drop_at:
                        writer.write(chunk(":keepalive\n\n"))
                    continue
                if event_id > sent:
                    writer.write(chunk(f"id: {event_id}\ndata: {data}\n\n"))
        finally:
            self.queues.discard(queue)


@pytest.fixture
def broker() -> Iterator[Broker]:
    with Broker() as b:
        yield b


def run_load(url: str, **kw: Any) -> dict[str, Any]:
    """Run load() and check the time bound every run must respect."""
    cfg = LoadConfig(url=url, **{"keepalive_interval": INTERVAL, **kw})
    start = time.monotonic()
    result = load(cfg).to_dict()
    assert time.monotonic() - start <= cfg.ramp + cfg.hold + 3.5
    json.dumps(result)  # the whole report is JSON
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fifty_streams_held(broker: Broker) -> None:
    broker.autopublish = 0.1
    r = run_load(broker.url("/events?idle=2"), streams=50, hold=2.0, ramp=0.3)
    assert r["ok"] is True, r
    assert (r["opened"], r["held"], r["open_at_end"], r["dropped"]) == (50, 50, 50, 0)
    assert r["never_opened"] == 0 and r["non_200"] == 0 and r["attempt_failures"] == {}
    assert r["first_byte_ms"]["n"] == 50
    assert 0 < r["first_byte_ms"]["p50"] <= r["first_byte_ms"]["p95"] <= r["first_byte_ms"]["p99"]
    assert len(r["first_byte_cdf_ms"]) == 101
    assert r["events"] >= 50 * 10
    assert r["events_lost"] == 0 and r["loss_method"] == "id-gaps"
    # events every 100 ms: the stream is never idle for the broker's 2 s keepalive period
    assert r["keepalives"] == 0 and r["keepalive_lateness_ms"]["n"] == 0
    assert r["elapsed_s"] >= 2.3
    opens = [sample["open"] for sample in r["series"]]
    assert max(opens) == 50 and r["series"][-1]["open"] == 50
    assert [s["t"] for s in r["series"][:2]] == [1.0, 2.0]


def test_idle_streams_keepalive_lateness(broker: Broker) -> None:
    r = run_load(broker.url("/events"), streams=5, hold=1.2)
    assert r["ok"] is True, r
    assert r["events"] == 0
    assert r["keepalives"] >= 5 * 4
    assert abs(r["keepalive_lateness_ms"]["p50"]) < 60


def test_dropped_streams_resume_without_loss(broker: Broker) -> None:
    broker.autopublish = 0.05
    r = run_load(broker.url("/events?drop=0.5"), streams=20, hold=1.5)
    assert r["ok"] is True, r
    assert r["dropped"] == 20 and r["drops"] == 20 and r["reconnects"] == 20
    assert r["resumed"] == 20 and r["held"] == 0 and r["open_at_end"] == 20
    assert r["drop_reasons"] == {"closed": 20}
    assert r["events_lost"] == 0 and r["duplicates"] == 0
    # back after the server's retry: (100 ms) plus the reconnect
    assert RETRY_MS <= r["time_back_ms"]["p50"] < RETRY_MS + 300
    # beyond its own wait (the retry: it got): exactly the retry less, stream by stream
    assert r["back_over_retry_ms"]["n"] == 20 and r["retry_range_ms"] == [RETRY_MS, RETRY_MS]
    for key in ("p50", "max"):
        assert round(r["time_back_ms"][key] - r["back_over_retry_ms"][key]) == RETRY_MS
    resumes = [h for t, h in broker.requests if "last-event-id" in h]
    assert len(resumes) == 20 and all(int(h["last-event-id"]) >= 1000 for h in resumes)


def test_lost_events_are_counted_by_id_gaps(broker: Broker) -> None:
    broker.autopublish = 0.05
    r = run_load(broker.url("/events?drop=0.5&noreplay=1"), streams=10, hold=1.2)
    assert r["ok"] is False
    assert r["reconnects"] == 10
    assert r["loss_method"] == "id-gaps"
    # the ~100 ms reconnect gap at 20 events/s: about 2 events per stream, none replayed
    assert r["events_lost"] >= 10
    assert r["gap_lost"] == r["events_lost"]


def test_publisher_counts_losses_exactly(broker: Broker) -> None:
    kw = {"publish_token": "sekret", "publish_interval": 0.1, "streams": 10, "hold": 1.6}
    ok = run_load(broker.url("/events?drop=0.6"), publish_url=broker.url("/publish"), **kw)
    assert ok["ok"] is True, ok
    assert ok["loss_method"] == "published-ids"
    assert ok["published"]["answers"] == {"202": ok["published"]["acknowledged"]}
    assert ok["published"]["acknowledged"] >= 10
    assert ok["events"] >= 10 * ok["published"]["acknowledged"] - 20
    assert ok["events_lost"] == 0 and ok["reconnects"] == 10
    # publish -> receipt for every event this run published and a stream received
    assert ok["delivery_ms"]["n"] == ok["events"]
    assert 0 < ok["delivery_ms"]["p50"] < 500
    assert 5 <= ok["published"]["events_per_s"] <= 11

    lossy = run_load(
        broker.url("/events?drop=0.6&noreplay=1"), publish_url=broker.url("/publish"), **kw
    )
    assert lossy["ok"] is False and lossy["events_lost"] > 0


def test_id_space_reset_is_not_a_loss(broker: Broker) -> None:
    broker.autopublish = 0.05
    # the jump in the middle of a 2 s hold: every stream has seen ids before it and sees
    # more after it, even on a loaded machine (at 0.5 of 1 s a slow stream once had not)
    cfg = LoadConfig(url=broker.url("/events"), streams=3, hold=2.0, keepalive_interval=INTERVAL)

    def jump() -> None:
        broker.skip_ids = 5_000_000  # like a restarted app that numbers from its boot time

    threading.Timer(1.0, broker.loop.call_soon_threadsafe, (jump,)).start()
    r = load(cfg).to_dict()
    assert r["id_resets"] == 3 and r["events_lost"] == 0


def test_refused_target_ends_at_once() -> None:
    start = time.monotonic()
    r = run_load(f"http://127.0.0.1:{free_port()}/events", streams=200, hold=30, ramp=10)
    assert time.monotonic() - start < 3
    assert r["ok"] is False
    assert r["opened"] == 0 and r["never_opened"] == 200
    assert r["attempt_failures"] == {"connect": 20}
    assert "refused" in r["failure_examples"]["connect"].lower()
    assert "none connected" in r["aborted"]


def test_silent_target_is_not_aborted(broker: Broker) -> None:
    # connections are made but nothing comes back: every stream is tried, none aborted
    r = run_load(broker.url("/silent"), streams=30, hold=1.0, first_byte_timeout=0.4)
    assert r["aborted"] is None and r["never_opened"] == 30
    assert r["attempt_failures"] == {"first_byte": 30}
    assert r["failure_examples"]["first_byte"] == "no response within 0.4 s"


def test_non_200_and_wrong_status_are_counted(broker: Broker) -> None:
    r = run_load(broker.url("/status-503"), streams=5, hold=0.5)
    assert r["ok"] is False
    assert r["non_200"] == 5 and r["statuses"] == {"503": 5}
    assert r["never_opened"] == 5 and r["aborted"] is None


def tls_server(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    """A server context for sse.test and 127.0.0.1 (a fresh self-signed cert); its path."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=sse.test"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", key, "-out", cert),
            *("-addext", "subjectAltName=DNS:sse.test,IP:127.0.0.1"),
            *("-addext", "keyUsage=critical,digitalSignature,keyCertSign"),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


def test_tls_streams(tmp_path: Path) -> None:
    ctx, cert = tls_server(tmp_path)
    with Broker(ctx) as tls:
        url = tls.url("/events", host="sse.test")
        r = run_load(
            url, streams=20, hold=1.0, cacert=cert, resolve=f"sse.test:{tls.port}:127.0.0.1"
        )
        assert r["ok"] is True, r
        assert r["connect_ms"]["n"] == 20
        assert all(h["host"] == f"sse.test:{tls.port}" for _, h in tls.requests)
        bad = run_load(url, streams=3, hold=1.0, resolve=f"sse.test:{tls.port}:127.0.0.1")
        assert bad["opened"] == 0 and "tls" in bad["attempt_failures"]
        assert r["tls_resume"] is False and r["tls"]["resumed"] == 0


def test_tls_session_resumption(tmp_path: Path) -> None:
    """--tls-resume: streams after the first resume a session (a returning browser); the
    resumed ones have their own connect-start -> :ok figures."""
    ctx, cert = tls_server(tmp_path)
    with Broker(ctx) as tls:
        url = tls.url("/events", host="sse.test")
        resolve = f"sse.test:{tls.port}:127.0.0.1"
        r = run_load(
            url, streams=20, hold=0.6, ramp=2.0, cacert=cert, resolve=resolve, tls_resume=True
        )
        assert r["ok"] is True, r
        # the first stream cannot resume; the later ones offer the newest session a stream
        # got (one that starts before the first has its ticket does a full handshake: on a
        # loaded machine a few may, so only "some resumed" is certain, 0 without resumption)
        assert r["tls"]["full_handshakes"] >= 1
        assert r["tls"]["resumed"] >= 1, r["tls"]
        assert r["tls"]["resumed"] + r["tls"]["full_handshakes"] == 20
        assert r["resumed_ok_ms"]["n"] == r["tls"]["resumed"]
        assert 0 < r["resumed_connect_ms"]["p50"] <= r["resumed_ok_ms"]["p50"]
        assert len(r["resumed_ok_cdf_ms"]) == 101
    with pytest.raises(ConfigError) as info:
        LoadConfig(url="http://127.0.0.1:1/events", streams=1, hold=1, tls_resume=True)
    assert info.value.argument == "tls_resume"


@pytest.mark.parametrize(
    ("code", "limit"),
    [(errno.EMFILE, "RLIMIT_NOFILE"), (errno.EADDRNOTAVAIL, "ephemeral ports")],
)
def test_a_limit_is_named(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, code: int, limit: str
) -> None:
    """A connect that fails on a limit of the load generator (faked: the socket call
    raises the errno the kernel gives) is reported by the limit's name, not as a target
    failure or a traceback."""
    real = Endpoint.open
    calls = 0

    async def open_or_fail(self: Endpoint, timeout: float) -> Any:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise OSError(code, os.strerror(code))
        return await real(self, timeout)

    monkeypatch.setattr(Endpoint, "open", open_or_fail)
    r = run_load(broker.url("/events"), streams=12, hold=0.5, ramp=0.2)
    assert r["ok"] is False
    assert r["opened"] == 5 and list(r["limits"]) == [limit]
    assert r["limits"][limit]["count"] == 7
    human = load_summary(r)
    assert f"LIMIT {limit}: 7 failed" in human
    assert human.rstrip().splitlines()[-1].startswith("FAIL")


def test_a_limit_that_stops_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_files(*args: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(sseprobe_load, "_run_load", no_files)
    with pytest.raises(ConfigError, match="RLIMIT_NOFILE") as info:
        load(LoadConfig(url="http://127.0.0.1:1/events", streams=1, hold=1))
    assert info.value.argument == "streams"


@pytest.mark.parametrize(
    ("kw", "argument"),
    [
        ({"streams": 0}, "streams"),
        ({"streams": "many"}, "streams"),
        ({"streams": 10, "ramp": -1}, "ramp"),
        ({"streams": 10, "hold": 0}, "hold"),
        (
            {"streams": 10, "publish_interval": 0, "publish_url": "http://127.0.0.1:1/p"},
            "publish_interval",
        ),
        ({"streams": 10, "publish_url": "ftp://x/"}, "publish_url"),
        ({"streams": 10, "publish_token": "t"}, "publish_token"),
    ],
)
def test_config_errors(kw: dict[str, Any], argument: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoadConfig(url="http://127.0.0.1:1/events", **kw)
    assert info.value.argument == argument


def test_only_loopback_targets() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        LoadConfig(url="http://192.0.2.1/events", streams=1, hold=1)
    with pytest.raises(ConfigError, match="loopback"):
        LoadConfig(
            url="https://example.test/events",
            streams=1,
            hold=1,
            resolve="example.test:443:192.0.2.1",
        )
    cfg = LoadConfig(
        url="https://example.test/e", streams=1, hold=1, resolve="example.test:443:127.0.0.1"
    )
    assert cfg.probe.connect_host == "127.0.0.1"


def test_percentiles() -> None:
    assert percentiles([]) == {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p = percentiles([float(v) for v in range(1, 101)], (50, 99))
    assert p == {"n": 100, "p50": 50.5, "p99": 99.01, "max": 100.0}


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30, **kw)


def test_cli_json_and_human(broker: Broker) -> None:
    out = cli(
        "load",
        broker.url("/events"),
        "--streams",
        "5",
        "--hold",
        "0.6",
        "--json",
        "--keepalive-interval",
        str(INTERVAL),
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["ok"] is True and r["held"] == 5
    human = cli("load", f"http://127.0.0.1:{free_port()}/events", "--streams", "3", "--hold", "5")
    assert human.returncode == 1
    assert "opened 0/3" in human.stdout and "ABORTED" in human.stdout
    assert human.stdout.rstrip().splitlines()[-1].startswith("FAIL: 0/3 open at the end")


def test_cli_over_the_open_files_limit() -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 256))

    out = cli(
        "load", "http://127.0.0.1:1/events", "--streams", "500", "--hold", "1", preexec_fn=low_limit
    )
    assert out.returncode == 2
    assert "--streams" in out.stderr and "RLIMIT_NOFILE allows 256 (hard limit 256)" in out.stderr
    # the soft limit is raised to the hard one first: 200 streams fit 256
    fits = cli(
        "load",
        f"http://127.0.0.1:{free_port()}/events",
        "--streams",
        "200",
        "--hold",
        "1",
        "--json",
        preexec_fn=low_limit,
    )
    assert fits.returncode == 1 and json.loads(fits.stdout)["nofile"]["soft"] == 256


def test_cli_usage_errors() -> None:
    out = cli("load", "http://127.0.0.1:1/events", "--streams", "0", "--hold", "1")
    assert out.returncode == 2 and "argument --streams" in out.stderr
    out = cli("load", "http://127.0.0.1:1/events", "--hold", "1")
    assert out.returncode == 2 and "--streams" in out.stderr


def test_sigint_ends_the_hold_early(broker: Broker) -> None:
    proc = subprocess.Popen(
        [
            *CLI,
            "load",
            broker.url("/events"),
            "--streams",
            "5",
            "--hold",
            "20",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    proc.send_signal(2)
    stdout, _ = proc.communicate(timeout=10)
    r = json.loads(stdout)
    assert r["stopped_early"] is True and r["elapsed_s"] < 5 and r["open_at_end"] == 5
