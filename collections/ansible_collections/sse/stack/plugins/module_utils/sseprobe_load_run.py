"""The engine of ``load``: simulated clients on one asyncio loop, and the publisher.

``LoadRun`` opens every stream of a LoadConfig over the ramp, reads each through the same
parsers as ``check`` (sseprobe_parsers), connects through the same Endpoint (resolve,
cacert, SNI), resumes dropped streams with Last-Event-ID, optionally publishes events of
its own, and counts; sseprobe_stats turns the counts into the report. The public entry is
``load`` in sseprobe_load. Standard library only; never shipped to a host.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import json
import ssl
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ansible_collections.sse.stack.plugins.module_utils.sseprobe import (
    Comment,
    Endpoint,
    Event,
    HTTPResponseParser,
    ResponseHead,
    SSEParser,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_config import (
    RECV_SIZE,
    USER_AGENT,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_parsers import KEEPALIVE_TEXT

if TYPE_CHECKING:
    from ansible_collections.sse.stack.plugins.module_utils.sseprobe_load import LoadConfig

DEFAULT_RECONNECT_DELAY = 3.0  # seconds, when the server sent no ``retry:`` (as browsers do)
ID_RESET_GAP = 1_000_000  # a larger jump between ids is a new id space, not lost events
ABORT_AFTER = 20  # this many failed first connects in a row, none opened: stop the run
PUBLISH_TIMEOUT = 10.0
MAX_PUBLISH_IN_FLIGHT = 16
CLEANUP_TIMEOUT = 3.0  # closing every connection at the end of the run
# errno values that mean this process or host ran out of something, not that the target
# failed: the limit each one names, and what lifts it
LIMITS: dict[int, tuple[str, str]] = {
    errno.EMFILE: (
        "RLIMIT_NOFILE",
        "this process ran out of open files (RLIMIT_NOFILE); lower --streams or raise the"
        " limit (ulimit -n/-Hn, systemd LimitNOFILE=, podman --ulimit nofile=)",
    ),
    errno.ENFILE: (
        "fs.file-max",
        "the system ran out of open files (fs.file-max); lower --streams or raise the sysctl",
    ),
    errno.EADDRNOTAVAIL: (
        "ephemeral ports",
        "no local port left towards the target (net.ipv4.ip_local_port_range, ports in"
        " TIME_WAIT); lower --streams or widen the range",
    ),
    errno.ENOBUFS: ("socket buffers", "the kernel refused socket memory (ENOBUFS)"),
}
LAST_SEQ_PREFIX = '{"seq":'  # the publisher's event data, as the reference app relays it


class _Stream:
    """What one simulated client knows about its stream across reconnects."""

    __slots__ = (
        "dropped_at",
        "drops",
        "events",
        "first_open_at",
        "index",
        "last_id",
        "last_int",
        "open",
        "open_at_end",
        "opened",
        "prev_at",
        "received",
        "resumes",
        "retry_ms",
        "waited_ms",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.opened = False  # got 200 + a body byte at least once
        self.open = False
        self.open_at_end = False
        self.first_open_at = 0.0
        self.prev_at = 0.0  # last time body bytes arrived (keepalive gaps are against this)
        self.dropped_at = 0.0
        self.drops = 0
        self.resumes = 0
        self.events = 0
        self.last_id = ""  # Last-Event-ID to resume with
        self.last_int: int | None = None
        self.received: set[int] = set()
        self.retry_ms: int | None = None
        self.waited_ms: float | None = None  # its wait after the latest drop (retry:)


LoadProgress = Callable[[dict[str, Any]], None]


class _Connection:
    """One connection of a client: its parsers and moments (loop time)."""

    __slots__ = (
        "first",
        "head_checked",
        "http",
        "sse",
        "ssl_object",
        "stream",
        "t0",
        "t_conn",
        "t_req",
    )

    def __init__(self, stream: _Stream, t0: float, t_conn: float, ssl_object: Any) -> None:
        self.stream = stream
        self.ssl_object = ssl_object  # None for http
        self.t0 = t0  # connect start
        self.t_conn = t_conn  # connected (TCP + TLS)
        self.t_req = t_conn  # request written
        self.http = HTTPResponseParser()
        self.sse = SSEParser()
        self.head_checked = False
        self.first = False  # a body byte arrived: the stream is open


class LoadRun:
    """One load run's clients, publisher and counters; ``run`` it once on a loop."""

    def __init__(self, cfg: LoadConfig, budget: dict[str, Any], progress: LoadProgress | None):
        self.cfg = cfg
        self.budget = budget
        self.progress = progress
        self.streams = [_Stream(i) for i in range(cfg.streams)]
        self.endpoint = Endpoint(cfg.probe)
        self.pub_endpoint = Endpoint(cfg.publish) if cfg.publish is not None else None
        self.stopped = False
        self.request = cfg.probe.request_bytes()
        self.open = 0
        self.drops = 0
        self.reconnects = 0
        self.events = 0
        self.keepalives = 0
        self.attempt_failures: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.drop_reasons: dict[str, int] = {}
        self.first_errors: dict[str, str] = {}  # one example message per failure kind
        self.first_byte_ms: list[float] = []
        self.connect_ms: list[float] = []
        self.ok_ms: list[float] = []
        # first connections that resumed a TLS session (--tls-resume): their own figures
        self.resumed_ok_ms: list[float] = []
        self.resumed_connect_ms: list[float] = []
        self.resumed_first_byte_ms: list[float] = []
        self.full_handshakes = 0
        self.tls_session: ssl.SSLSession | None = None
        self.limits: dict[str, dict[str, Any]] = {}
        # publish -> receipt per delivered event (ms), from the publisher's send time
        self.delivery_ms = array("d")
        self.sent_at: dict[int, float] = {}
        self.publish_window: tuple[float, float] | None = None
        self.time_back_ms: list[float] = []
        # time back minus the retry: the stream itself waited (a jittered retry: differs
        # per stream): what the server's side added
        self.over_retry_ms: list[float] = []
        self.retry_range: list[int] = []  # the smallest and largest retry: seen
        self.lateness_ms: list[float] = []
        self.bunched = 0
        self.retry_hint: int | None = None
        self.drop_times: list[float] = []
        self.gap_lost = 0
        self.id_resets = 0
        self.duplicates = 0
        self.non_integer_ids = 0
        self.series: list[dict[str, Any]] = []
        self.publishes: list[tuple[int, float, float]] = []  # (id, sent, acknowledged)
        self.publish_counts: dict[str, int] = {}
        self.publish_in_flight = 0
        self.connect_failures_in_a_row = 0
        self.any_connected = False
        self.ending = False
        self.aborted: str | None = None
        self.tasks_left = cfg.streams
        if cfg.tls_resume:
            self._resume_sessions()

    def _resume_sessions(self) -> None:
        """Every TLS connection offers the newest session a connection of this run got (a
        returning browser resumes its session instead of a full handshake). asyncio gives
        no way to pass ``session=``, so the context's ``wrap_bio`` (what asyncio calls for
        each connection) is wrapped on this run's own context."""
        ctx = self.endpoint.context()
        if ctx is None:
            return
        plain = ctx.wrap_bio

        def wrap_bio(
            incoming: ssl.MemoryBIO,
            outgoing: ssl.MemoryBIO,
            server_side: bool = False,
            server_hostname: str | None = None,
            session: ssl.SSLSession | None = None,
        ) -> ssl.SSLObject:
            return plain(
                incoming,
                outgoing,
                server_side=server_side,
                server_hostname=server_hostname,
                session=session or self.tls_session,
            )

        ctx.wrap_bio = wrap_bio  # type: ignore[method-assign]

    # -- the run ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None) -> None:
        """Hold the streams until the end of the hold, ``stop`` or an abort."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.loop = loop
        self.t_start = loop.time()
        self.ramp_end = self.t_start + cfg.ramp
        self.end_at = self.ramp_end + cfg.hold
        self.wake = asyncio.Event()
        tasks = [loop.create_task(self._stream(s)) for s in self.streams]
        helpers = [loop.create_task(self._sample())]
        if cfg.publish is not None:
            helpers.append(loop.create_task(self._publisher()))
        waiters = [
            loop.create_task(asyncio.sleep(self.end_at - loop.time())),
            loop.create_task(self.wake.wait()),
        ]
        if stop is not None:
            waiters.append(loop.create_task(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.ending = True
            self.finished_at = loop.time()
            for s in self.streams:
                s.open_at_end = s.open
                if s.open:
                    # A keepalive that is overdue at the end counts as late as it is now.
                    gap = self.finished_at - s.prev_at - cfg.keepalive_interval
                    if gap > 0:
                        self.lateness_ms.append(gap * 1000.0)
            self._record_sample(final=True)
            everything = tasks + helpers + waiters
            for task in everything:
                task.cancel()
            await asyncio.wait(everything, timeout=CLEANUP_TIMEOUT)
        self.stopped = stop is not None and stop.is_set()

    async def _sample(self) -> None:
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, self.t_start + n - self.loop.time()))
            self._record_sample()

    def _record_sample(self, final: bool = False) -> None:
        t = round(self.loop.time() - self.t_start, 2 if final else 1)
        sample = {
            "t": t,
            "open": self.open,
            "dropped": self.drops,
            "reconnected": self.reconnects,
            "events": self.events,
            "failed": sum(self.attempt_failures.values()),
        }
        self.series.append(sample)
        if self.progress is not None and not final:
            self.progress(dict(sample, streams=self.cfg.streams, end=self.end_at - self.t_start))

    # -- one client ------------------------------------------------------------------------

    async def _stream(self, s: _Stream) -> None:
        cfg, loop = self.cfg, self.loop
        try:
            delay = self.t_start + cfg.ramp * s.index / cfg.streams - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            resume = False
            while not self.ending:
                await self._attempt(s, resume)
                if self.ending or not s.opened:
                    return  # a stream that never opened is not retried
                # Dropped, or a reconnect failed: wait like an EventSource, then resume.
                if cfg.reconnect_delay is not None:
                    delay = cfg.reconnect_delay
                elif s.retry_ms is not None:
                    delay = s.retry_ms / 1000.0
                else:
                    delay = DEFAULT_RECONNECT_DELAY
                if loop.time() + delay >= self.end_at:
                    return
                if s.waited_ms is None:
                    s.waited_ms = delay * 1000.0  # the client's own wait after the drop
                await asyncio.sleep(delay)
                resume = True
        finally:
            self.tasks_left -= 1
            if self.tasks_left == 0:
                self.wake.set()

    def _request_for(self, s: _Stream, resume: bool) -> bytes:
        if not (resume and s.last_id):
            return self.request
        probe = copy.copy(self.cfg.probe)
        headers = {k: v for k, v in probe.headers.items() if k.lower() != "last-event-id"}
        headers["Last-Event-ID"] = s.last_id
        probe.headers = headers
        return probe.request_bytes()

    async def _attempt(self, s: _Stream, resume: bool) -> None:
        """One connection: connect, request, then read until it ends (or the run does)."""
        loop = self.loop
        t0 = loop.time()
        try:
            reader, writer = await self.endpoint.open(self.cfg.first_byte_timeout)
        except asyncio.TimeoutError:
            self._connect_failed(s, *self.endpoint.failure(TimeoutError(), "open"))
            return
        except OSError as exc:  # ssl.SSLError included
            self._limit_hit(exc)
            self._connect_failed(s, *self.endpoint.failure(exc, "open"))
            return
        self.connect_failures_in_a_row = 0
        self.any_connected = True
        c = _Connection(s, t0, loop.time(), writer.get_extra_info("ssl_object"))
        try:
            writer.write(self._request_for(s, resume))
            c.t_req = loop.time()
            await self._read(c, reader)
        except asyncio.TimeoutError:
            if c.http.head_started:
                self._failed(s, "status", "response head not complete in time")
            else:
                what = "body byte" if c.http.head is not None else "response"
                self._failed(s, "first_byte", f"no {what} within {self.cfg.first_byte_timeout:g} s")
        except (OSError, ssl.SSLError) as exc:
            if c.first:
                self._dropped(s, "reset", loop.time())
            else:
                self._failed(s, "status", f"connection error before the first body byte: {exc}")
        finally:
            writer.transport.abort()

    async def _read(self, c: _Connection, reader: asyncio.StreamReader) -> None:
        """Read until the connection ends; the first body byte is due within the timeout."""
        loop = self.loop
        deadline = c.t_req + self.cfg.first_byte_timeout
        while True:
            if c.first:
                data = await reader.read(RECV_SIZE)
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                data = await asyncio.wait_for(reader.read(RECV_SIZE), remaining)
            at = loop.time()
            if not data:
                self._eof(c, at)
                return
            if not self._feed(c, data, at):
                return

    def _eof(self, c: _Connection, at: float) -> None:
        c.http.feed_eof()
        if c.first:
            self._dropped(c.stream, "closed" if c.http.truncated else "ended", at)
            return
        error = c.http.error
        self._failed(
            c.stream,
            "status" if error else "first_byte",
            error.message if error else "stream ended before any body byte",
        )

    def _feed(self, c: _Connection, data: bytes, at: float) -> bool:
        """Judge received bytes; False once this connection is over."""
        s, http, sse = c.stream, c.http, c.sse
        body = http.feed(data)
        if http.head is not None and not c.head_checked:
            c.head_checked = True
            if not self._head_ok(s, http.head):
                return False
        for piece in body:
            if not piece:
                continue
            if not c.first:
                c.first = True
                self._opened(s, c, at)
            for item in sse.feed(piece, at):
                self._item(s, item)
            if sse.id_seen:
                s.last_id = sse.last_event_id
            if sse.retry_ms is not None and sse.retry_ms != s.retry_ms:
                s.retry_ms = self.retry_hint = sse.retry_ms
                if not self.retry_range:
                    self.retry_range = [sse.retry_ms, sse.retry_ms]
                elif not self.retry_range[0] <= sse.retry_ms <= self.retry_range[1]:
                    low, high = self.retry_range
                    self.retry_range = [min(low, sse.retry_ms), max(high, sse.retry_ms)]
        if c.first:
            s.prev_at = at
        error = http.error or sse.error
        if error is not None:
            if c.first:
                self._dropped(s, "protocol", at)
            else:
                self._failed(s, error.check, error.message)
            return False
        if http.done:
            if c.first:
                self._dropped(s, "ended", at)
            else:
                self._failed(s, "first_byte", "response ended before any body byte")
            return False
        return True

    def _head_ok(self, s: _Stream, head: ResponseHead) -> bool:
        if head.status != 200:
            key = str(head.status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            self._failed(s, "status", f"HTTP {head.status} {head.reason}".strip())
            return False
        mime = head.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if mime != "text/event-stream":
            self._failed(s, "content_type", f"Content-Type {mime or 'missing'}")
            return False
        return True

    def _opened(self, s: _Stream, c: _Connection, at: float) -> None:
        tls = c.ssl_object
        if tls is not None and self.cfg.tls_resume:
            # By the first body byte the server's session ticket (TLS 1.3 sends it after
            # the handshake) has been read: the next connections offer this session.
            session = tls.session
            if session is not None:
                self.tls_session = session
        if not s.opened:
            s.opened = True
            s.first_open_at = at
            self.first_byte_ms.append((at - c.t_req) * 1000.0)
            self.connect_ms.append((c.t_conn - c.t0) * 1000.0)
            self.ok_ms.append((at - c.t0) * 1000.0)
            if tls is not None and self.cfg.tls_resume:
                if tls.session_reused:
                    self.resumed_first_byte_ms.append((at - c.t_req) * 1000.0)
                    self.resumed_connect_ms.append((c.t_conn - c.t0) * 1000.0)
                    self.resumed_ok_ms.append((at - c.t0) * 1000.0)
                else:
                    self.full_handshakes += 1
        else:
            s.resumes += 1
            self.reconnects += 1
            self.time_back_ms.append((at - s.dropped_at) * 1000.0)
            if s.waited_ms is not None:
                self.over_retry_ms.append((at - s.dropped_at) * 1000.0 - s.waited_ms)
                s.waited_ms = None
        s.open = True
        s.prev_at = at
        self.open += 1

    def _item(self, s: _Stream, item: Comment | Event) -> None:
        if isinstance(item, Comment):
            if item.text.strip() == KEEPALIVE_TEXT:
                self.keepalives += 1
                gap = item.at - s.prev_at
                if gap < self.cfg.keepalive_interval / 2.0:
                    # Arrived together with earlier bytes: something in between held them
                    # back (a buffering proxy); their lateness cannot be told from here.
                    self.bunched += 1
                else:
                    self.lateness_ms.append((gap - self.cfg.keepalive_interval) * 1000.0)
            return
        s.events += 1
        self.events += 1
        if self.sent_at and item.data.startswith(LAST_SEQ_PREFIX):
            try:
                sent = self.sent_at.get(int(item.data[len(LAST_SEQ_PREFIX) : -1]))
            except ValueError:
                sent = None
            if sent is not None:
                self.delivery_ms.append((item.at - sent) * 1000.0)
        try:
            n = int(item.id)
        except ValueError:
            self.non_integer_ids += 1
            return
        last = s.last_int
        if last is not None:
            gap = n - last - 1
            if gap < 0:
                self.duplicates += 1
            elif 0 < gap <= ID_RESET_GAP:
                self.gap_lost += gap
            elif gap > ID_RESET_GAP:
                self.id_resets += 1
        if last is None or n > last:
            s.last_int = n
        if self.cfg.publish is not None:
            s.received.add(n)

    def _dropped(self, s: _Stream, reason: str, at: float) -> None:
        if self.ending:
            return
        s.open = False
        s.drops += 1
        s.dropped_at = at
        self.drop_times.append(round(at - self.t_start, 2))
        self.open -= 1
        self.drops += 1
        self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + 1

    def _failed(self, s: _Stream, kind: str, message: str) -> None:
        if self.ending:
            return
        self.attempt_failures[kind] = self.attempt_failures.get(kind, 0) + 1
        self.first_errors.setdefault(kind, message)

    def _limit_hit(self, exc: OSError) -> None:
        """Count a failure that a limit of this process or host caused, by the limit."""
        known = LIMITS.get(exc.errno or 0)
        if known is None:
            return
        name, advice = known
        entry = self.limits.setdefault(name, {"count": 0, "message": advice})
        entry["count"] += 1
        entry.setdefault("first_at_open", self.open)

    def _connect_failed(self, s: _Stream, kind: str, message: str) -> None:
        if self.ending:
            return
        self._failed(s, kind, message)
        if s.opened:
            return
        self.connect_failures_in_a_row += 1
        limit = min(ABORT_AFTER, self.cfg.streams)
        if not self.any_connected and self.connect_failures_in_a_row >= limit:
            self.aborted = (
                f"the first {limit} connection(s) failed and none connected ({kind}: {message});"
                " is the target up?"
            )
            self.wake.set()

    # -- the publisher -----------------------------------------------------------------------

    async def _publisher(self) -> None:
        cfg, loop = self.cfg, self.loop
        # From when the streams are open until shortly before the end, so that every event
        # acknowledged in time has had the chance to reach every stream.
        start = self.ramp_end + min(1.0, cfg.hold / 10.0)
        stop = self.end_at - self.publish_tail()
        self.publish_window = (start - self.t_start, stop - self.t_start)
        seq = 0
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                at = start + seq * cfg.publish_interval
                if at >= stop:
                    break
                await asyncio.sleep(max(0.0, at - loop.time()))
                seq += 1
                if self.publish_in_flight >= MAX_PUBLISH_IN_FLIGHT:
                    self._count_publish("skipped")
                    continue
                task = loop.create_task(self._publish_one(seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, self.end_at - loop.time()))
        finally:
            for task in list(tasks):
                task.cancel()

    def publish_tail(self) -> float:
        """No publishing in the last seconds of the hold: events still on their way at the
        end (acknowledged within half of this before it) are not judged."""
        return min(2.0, self.cfg.hold / 4.0)

    def _count_publish(self, key: str) -> None:
        self.publish_counts[key] = self.publish_counts.get(key, 0) + 1

    def _publish_request(self, seq: int) -> bytes:
        pub = self.cfg.publish
        assert pub is not None
        body = json.dumps({"event": "sseprobe", "data": {"seq": seq}}).encode()
        lines = [
            f"POST {pub.target} HTTP/1.1",
            f"Host: {pub.host_header}",
            f"User-Agent: {USER_AGENT}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if self.cfg.publish_token:
            lines.append(f"Authorization: Bearer {self.cfg.publish_token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _publish_one(self, seq: int) -> None:
        loop, endpoint = self.loop, self.pub_endpoint
        assert endpoint is not None
        self.publish_in_flight += 1
        sent = loop.time()
        self.sent_at[seq] = sent
        writer = None
        try:
            deadline = sent + PUBLISH_TIMEOUT
            reader, writer = await endpoint.open(PUBLISH_TIMEOUT)
            writer.write(self._publish_request(seq))
            http = HTTPResponseParser()
            chunks: list[bytes] = []
            while not http.done and http.error is None:
                data = await asyncio.wait_for(reader.read(RECV_SIZE), deadline - loop.time())
                if not data:
                    http.feed_eof()
                    break
                chunks.extend(http.feed(data))
            head = http.head
            if head is None or http.error is not None:
                self._count_publish("error")
                return
            self._count_publish(str(head.status))
            if 200 <= head.status < 300:
                try:
                    event_id = int(json.loads(b"".join(chunks))["id"])
                except (ValueError, KeyError, TypeError):
                    self._count_publish("no_id")
                    return
                self.publishes.append((event_id, sent, loop.time()))
        except asyncio.TimeoutError:
            self._count_publish("timeout")
        except (OSError, ssl.SSLError) as exc:
            self._limit_hit(exc)
            self._count_publish("error")
        finally:
            self.publish_in_flight -= 1
            if writer is not None:
                writer.transport.abort()
