"""Load mode: many concurrent streams to a loopback target, measured (``sseprobe load``).

Used by the ``sseprobe`` command and the bench only, never by a module: nothing in
sseprobe.py (what a module run ships) imports this. ``LoadConfig`` validates a run,
``nofile_budget`` checks that its streams fit this process, ``load`` runs it on one asyncio
loop (the engine is sseprobe_load_run, the report sseprobe_stats) and says what it counts.
Loopback targets only, bounded by ``ramp + hold``. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.sse.stack.plugins.module_utils.sseprobe import ConfigError, ProbeConfig
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_config import (
    number,
    ssl_context,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_load_run import (
    LIMITS,
    LoadProgress,
    LoadRun,
)
from ansible_collections.sse.stack.plugins.module_utils.sseprobe_stats import (
    LoadResult,
    percentiles,
    summarise,
)

__all__ = ["ConfigError", "LoadConfig", "LoadResult", "load", "nofile_budget", "percentiles"]

LOAD_FD_RESERVE = 32  # descriptors beyond one per stream: stdio, the loop, the publisher
MAX_LOAD_STREAMS = 100_000
TLS_READ_BUFFER = 16 * 1024 + 256  # one TLS record of plaintext


def _loopback(argument: str, host: str) -> None:
    """Refuse a load target that is not a loopback address: load is for the host itself."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(argument, f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = {info[4][0].split("%", 1)[0] for info in infos}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ConfigError(
            argument,
            f"load only targets loopback addresses; {host} is {', '.join(sorted(addresses))}"
            " (run it on the host that serves the stream, with --resolve HOST:PORT:127.0.0.1)",
        )


@dataclass
class LoadConfig:
    """A load run: ``streams`` concurrent streams to ``url``. Constructing it validates.

    Streams start evenly over ``ramp`` seconds and are then all held for ``hold`` seconds,
    so a run lasts ``ramp + hold`` (plus at most CLEANUP_TIMEOUT to close). A stream that
    drops is reopened after ``reconnect_delay`` (None: the server's ``retry:`` hint, else
    DEFAULT_RECONNECT_DELAY) with ``Last-Event-ID``. With ``publish_url`` the run also
    publishes one event every ``publish_interval`` seconds (POST ``{"data": ...}`` with
    ``Authorization: Bearer publish_token``) and counts lost events exactly (see ``load``).
    ``url``, ``cacert``, ``insecure``, ``headers``, ``resolve`` and ``first_byte_timeout``
    mean what they mean for ``check``; targets must be loopback addresses. ``tls_resume``
    (https only): every connection offers the newest TLS session an earlier connection of
    the run got, as a returning browser does; resumed first connections get figures of
    their own.
    """

    url: str
    streams: int = 100
    hold: float = 60.0
    ramp: float = 0.0
    keepalive_interval: float = 30.0
    first_byte_timeout: float = 5.0
    reconnect_delay: float | None = None
    cacert: str | None = None
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    resolve: str | None = None
    publish_url: str | None = None
    publish_token: str | None = None
    publish_interval: float = 1.0
    tls_resume: bool = False
    probe: ProbeConfig = field(init=False, repr=False)
    publish: ProbeConfig | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        streams = self.streams
        if isinstance(streams, bool) or not isinstance(streams, int):
            try:
                streams = int(str(streams), 10)
            except ValueError:
                raise ConfigError("streams", f"must be a whole number, got {streams!r}") from None
        if not 1 <= streams <= MAX_LOAD_STREAMS:
            raise ConfigError("streams", f"must be 1 to {MAX_LOAD_STREAMS}, got {streams}")
        self.streams = streams
        self.ramp = number("ramp", self.ramp)
        if self.ramp < 0:
            raise ConfigError("ramp", f"must be >= 0, got {self.ramp:g}")
        if self.reconnect_delay is not None:
            self.reconnect_delay = number("reconnect_delay", self.reconnect_delay)
            if self.reconnect_delay < 0:
                raise ConfigError("reconnect_delay", f"must be >= 0, got {self.reconnect_delay:g}")
        self.publish_interval = number("publish_interval", self.publish_interval)
        if self.publish_interval <= 0:
            raise ConfigError("publish_interval", f"must be > 0, got {self.publish_interval:g}")
        # The stream request, validated exactly as for `check` (same argument names).
        self.probe = ProbeConfig(
            url=self.url,
            hold=self.hold,
            keepalive_interval=self.keepalive_interval,
            first_byte_timeout=self.first_byte_timeout,
            expect_first=None,
            cacert=self.cacert,
            insecure=self.insecure,
            headers=self.headers,
            resolve=self.resolve,
        )
        if self.tls_resume and self.probe.scheme != "https":
            raise ConfigError("tls_resume", "needs an https:// URL")
        self.hold = self.probe.hold
        self.keepalive_interval = self.probe.keepalive_interval
        self.first_byte_timeout = self.probe.first_byte_timeout
        self.headers = self.probe.headers
        _loopback("url", self.probe.connect_host)
        self.publish = None
        if self.publish_url not in (None, ""):
            try:
                publish = ProbeConfig(
                    url=self.publish_url, cacert=self.cacert, insecure=self.insecure
                )
                if self.probe.resolve and (publish.host, publish.port) == (
                    self.probe.host,
                    self.probe.port,
                ):
                    publish.connect_host = self.probe.connect_host  # --resolve applies too
            except ConfigError as exc:
                raise ConfigError("publish_url", exc.message) from None
            _loopback("publish_url", publish.connect_host)
            token = "" if self.publish_token is None else str(self.publish_token).strip()
            if any(c in token for c in "\r\n"):
                raise ConfigError("publish_token", "must be a single line")
            self.publish_token = token
            self.publish = publish
        elif self.publish_token:
            raise ConfigError("publish_token", "needs publish_url")


def nofile_budget(streams: int, reserve: int = LOAD_FD_RESERVE) -> dict[str, int | None]:
    """Raise the soft open-files limit to the hard one; ConfigError if ``streams`` cannot fit.

    Each stream holds one descriptor in this process and one local port towards the target,
    so the check covers RLIMIT_NOFILE and, where readable, the ephemeral port range.
    """
    needed = streams + reserve
    try:
        import resource
    except ImportError:  # not a Unix: nothing to check
        return {"soft": None, "hard": None, "needed": needed}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        target = hard
        if hard == resource.RLIM_INFINITY:
            try:
                with open("/proc/sys/fs/nr_open") as fh:
                    target = int(fh.read())
            except (OSError, ValueError):
                target = 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def show(value: int) -> str:
        return "unlimited" if value == resource.RLIM_INFINITY else str(value)

    if soft != resource.RLIM_INFINITY and needed > soft:
        raise ConfigError(
            "streams",
            f"{streams} streams need about {needed} open files, but RLIMIT_NOFILE allows"
            f" {show(soft)} (hard limit {show(hard)}); lower the number of streams or raise"
            " the hard limit (ulimit -Hn, systemd LimitNOFILE=, podman --ulimit nofile=)",
        )
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(v) for v in fh.read().split())
    except (OSError, ValueError):
        low = high = 0
    if high > low and streams > high - low + 1:
        raise ConfigError(
            "streams",
            f"{streams} streams need {streams} local ports, but net.ipv4.ip_local_port_range"
            f" has {high - low + 1} ({low}-{high})",
        )
    return {
        "soft": None if soft == resource.RLIM_INFINITY else soft,
        "hard": None if hard == resource.RLIM_INFINITY else hard,
        "needed": needed,
    }


def load(
    config: LoadConfig,
    progress: LoadProgress | None = None,
    handle_signals: bool = False,
) -> LoadResult:
    """Open ``config.streams`` streams, hold them, and measure; never raises for server faults.

    Raises ConfigError before anything is opened when the streams cannot fit this process's
    open-files limit (raised to the hard limit first) or the cacert cannot be loaded.
    ``progress`` is called once a second with the latest time-series sample.
    ``handle_signals``: SIGINT/SIGTERM end the hold early and still report.

    What is counted (per simulated client, across its reconnects):

    * opened: got HTTP 200 text/event-stream and a first body byte at least once. A client
      whose first connection fails is not retried (counted in ``never_opened`` and in
      ``attempt_failures``); if the first ABORT_AFTER connects all fail (not one TCP/TLS
      connection made) the run stops.
    * held: open at the end of the hold and never dropped; resumed: open at the end after
      at least one drop; dropped: clients with at least one drop (``drops`` counts them all).
    * A dropped client waits ``reconnect_delay`` (default: the server's ``retry:``) and
      reconnects with ``Last-Event-ID`` until it is back or the run ends; unlike EventSource
      it also retries after a non-200 answer so that the time back stays measurable
      (``non_200`` and ``statuses`` count those answers). time_back: drop to first byte;
      back_over_retry: time back minus the client's own wait after the drop (its
      ``retry:``, which differs per stream when the server jitters it); retry_range_ms:
      the smallest and largest ``retry:`` seen.
    * first_byte_ms: request sent to first body byte, first connections only (as ``check``);
      connect_ms: TCP (+TLS) connect; ok_ms: connect start to first body byte.
    * keepalive lateness: for every ``:keepalive``, the time since the previous body bytes
      of that stream minus ``keepalive_interval`` (the server sends one after that much
      idle time); a stream whose keepalive is overdue at the end adds its overdue time.
      A keepalive that arrives less than half an interval after the previous bytes was
      held back together with them (a buffering proxy) and is counted in
      ``keepalives_bunched`` instead. ``drops_at_s``: when each drop happened.
    * events lost. Method "id-gaps" (no publisher): ids are integers that grow by one per
      publish, so per client every jump from the previous id to the next one, within a
      connection or across a resume (the resume asks for everything after the last id),
      counts ``jump - 1`` lost events. A jump over ID_RESET_GAP is a new id space (e.g. the
      reference app numbers from its boot time, so a restart jumps) and is counted in
      ``id_resets`` instead; ids going backwards count as ``duplicates``. Gaps before a
      client's first event cannot be seen this way. Method "published-ids" (with
      ``publish_url``): the run publishes events itself and knows their ids; a client loses
      an event published after its first byte and acknowledged at least 1 s (hold/8 when
      shorter) before the end, or before its last drop if it did not come back, that it
      never received. Publishing stops 2 s (hold/4) before the end. This also
      sees losses across restarts and before the first event. ``gap_lost`` is always given.
    * delivery_ms (with ``publish_url``): for every event received that this run published,
      publish request sent -> event received on a stream (one clock, this process);
      ``published.events_per_s``: acknowledged publishes / the publishing window.
    * tls (``tls_resume``): first connections that resumed a session and that did a full
      handshake; ``resumed_ok_ms``, ``resumed_connect_ms``, ``resumed_first_byte_ms``: the
      figures above for the resumed ones only.
    * limits: connects or publishes that failed because this process or host ran out of
      something (RLIMIT_NOFILE, fs.file-max, ephemeral ports, socket buffers), each with
      its count and what lifts it; any of them fails the run.
    """
    budget = nofile_budget(config.streams)
    try:
        ssl_context(config.cacert, config.insecure)  # for the streams and the publisher
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("cacert", f"cannot be loaded: {exc}") from None
    try:
        return asyncio.run(_run_load(config, budget, progress, handle_signals))
    except OSError as exc:
        # A limit that stops the loop itself (not one stream): say which, not a traceback.
        known = LIMITS.get(exc.errno or 0)
        if known is None:
            raise
        raise ConfigError("streams", f"{known[0]}: {known[1]} ({exc})") from None


async def _run_load(
    config: LoadConfig,
    budget: dict[str, Any],
    progress: LoadProgress | None,
    handle_signals: bool,
) -> LoadResult:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    hooked: list[int] = []
    # asyncio's TLS layer (CPython 3.11+) gives every connection a 256 KiB read buffer up
    # front: 2.5 GiB for 10,000 streams, more than the servers being measured. One TLS
    # record (16 KiB) is all a read needs, so this run lowers it and puts it back after.
    tls_protocol = getattr(getattr(asyncio, "sslproto", None), "SSLProtocol", None)
    tls_buffer = getattr(tls_protocol, "max_size", None)
    if isinstance(tls_buffer, int) and tls_buffer > TLS_READ_BUFFER:
        tls_protocol.max_size = TLS_READ_BUFFER  # type: ignore[union-attr]
    if handle_signals:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                hooked.append(sig)
    try:
        run = LoadRun(config, budget, progress)
        await run.run(stop)
        return LoadResult(summarise(run))
    finally:
        for sig in hooked:
            loop.remove_signal_handler(sig)
        if isinstance(tls_buffer, int) and tls_buffer > TLS_READ_BUFFER:
            tls_protocol.max_size = tls_buffer  # type: ignore[union-attr]
