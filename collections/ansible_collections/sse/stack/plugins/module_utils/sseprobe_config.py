"""The probe's inputs and its one way to connect: ConfigError, ProbeConfig, Endpoint.

``ProbeConfig`` validates what to probe (``check`` takes it as is; ``load`` builds one for
its streams and one for its publisher). ``Endpoint`` is the single connect/TLS helper of
both: it dials the address ``resolve`` names (else the url's host) while Host, SNI and
certificate verification keep the url's host, with one TLS client context, and it words
connection failures the same way for the blocking check and the asyncio load.

Standard library only and Python 3.9+: shipped to targets with the sse.stack module_utils
``sseprobe``.
"""

from __future__ import annotations

import math
import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.sse.stack.plugins.module_utils.sseprobe_parsers import TOKEN_RE

RECV_SIZE = 65536
USER_AGENT = "sseprobe/1"


class ConfigError(ValueError):
    """An invalid probe argument; ``argument`` is its ProbeConfig field name."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument} {message}")
        self.argument = argument
        self.message = message


def number(argument: str, value: Any) -> float:
    """``value`` as a finite float, else ConfigError naming ``argument``."""
    if isinstance(value, bool):
        raise ConfigError(argument, f"must be a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(argument, f"must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise ConfigError(argument, f"must be a finite number, got {value!r}")
    return result


_RESOLVE_RE = re.compile(r"([^:\[\]\s]+):(\d{1,5}):(\[[0-9A-Fa-f:.]+\]|[^\s\[\]]+)")


@dataclass
class ProbeConfig:
    """What to probe and how. Constructing it validates; errors raise ConfigError (a ValueError).

    ``hold``: seconds to hold the stream, from sending the request. ``keepalive_interval`` +
    ``tolerance``: the longest allowed gap without a keepalive. ``first_byte_timeout``: limit
    for connecting and for the first body byte. ``expect_first``: required first body line
    (None or "" disables that check). ``cacert``: CA bundle file for https. ``insecure``: skip
    certificate verification. ``headers``: extra request headers. ``resolve``: curl-style
    ``HOST:PORT:ADDR`` to connect to ADDR while keeping HOST for Host, SNI and verification.
    """

    url: str
    hold: float = 35.0
    keepalive_interval: float = 30.0
    tolerance: float = 2.0
    first_byte_timeout: float = 5.0
    expect_first: str | None = ":ok"
    cacert: str | None = None
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    resolve: str | None = None
    # Derived from url/resolve by __post_init__.
    scheme: str = field(init=False, default="")
    host: str = field(init=False, default="")
    port: int = field(init=False, default=0)
    target: str = field(init=False, default="/")
    host_header: str = field(init=False, default="")
    connect_host: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.hold = number("hold", self.hold)
        self.keepalive_interval = number("keepalive_interval", self.keepalive_interval)
        self.tolerance = number("tolerance", self.tolerance)
        self.first_byte_timeout = number("first_byte_timeout", self.first_byte_timeout)
        for name in ("hold", "keepalive_interval", "first_byte_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name):g}")
        if self.tolerance < 0:
            raise ConfigError("tolerance", f"must be >= 0, got {self.tolerance:g}")
        self._parse_url()
        self._parse_resolve()
        if self.expect_first is not None:
            if not isinstance(self.expect_first, str):
                raise ConfigError("expect_first", "must be a string")
            if "\r" in self.expect_first or "\n" in self.expect_first:
                raise ConfigError("expect_first", "must be a single line")
            if not self.expect_first:
                self.expect_first = None
        if self.cacert is not None:
            if not isinstance(self.cacert, str) or not self.cacert:
                raise ConfigError("cacert", "must be a file path")
            if not os.path.isfile(self.cacert):
                raise ConfigError("cacert", f"file not found: {self.cacert}")
        self.insecure = bool(self.insecure)
        self.headers = self._check_headers(self.headers)

    def _parse_url(self) -> None:
        url = self.url
        if not isinstance(url, str) or not url:
            raise ConfigError("url", "is required")
        if any(c in url for c in " \t\r\n"):
            raise ConfigError("url", f"must not contain whitespace: {url!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError("url", f"is malformed ({exc}): {url!r}") from None
        if parts.scheme not in ("http", "https"):
            raise ConfigError("url", f"must be an http:// or https:// URL, got {url!r}")
        if not parts.hostname:
            raise ConfigError("url", f"has no host: {url!r}")
        if "@" in parts.netloc:
            raise ConfigError("url", "must not contain credentials (send a header instead)")
        if port == 0:
            raise ConfigError("url", f"has an invalid port: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self.host_header = parts.netloc
        self.connect_host = self.host

    def _parse_resolve(self) -> None:
        if self.resolve in (None, ""):
            self.resolve = None
            return
        m = _RESOLVE_RE.fullmatch(self.resolve) if isinstance(self.resolve, str) else None
        if m is None:
            raise ConfigError("resolve", f"must be HOST:PORT:ADDR, got {self.resolve!r}")
        host, port, addr = m.group(1), int(m.group(2)), m.group(3).strip("[]")
        if host.lower() != self.host or port != self.port:
            # curl silently ignores a non-matching entry; a probe should not.
            raise ConfigError(
                "resolve",
                f"{host}:{port} does not match the url's host and port {self.host}:{self.port}",
            )
        self.connect_host = addr

    @staticmethod
    def _check_headers(headers: Any) -> dict[str, str]:
        if headers is None:
            return {}
        if not isinstance(headers, dict):
            raise ConfigError("headers", "must be a mapping of name to value")
        clean: dict[str, str] = {}
        for name, value in headers.items():
            name = str(name).strip()
            value = "" if value is None else str(value).strip()
            if not TOKEN_RE.fullmatch(name.encode("utf-8", "replace")):
                raise ConfigError("headers", f"has an invalid header name {name!r}")
            if "\r" in value or "\n" in value:
                raise ConfigError("headers", f"value of {name} must be a single line")
            clean[name] = value
        return clean

    @property
    def keepalive_limit(self) -> float:
        """The longest allowed gap without a keepalive."""
        return self.keepalive_interval + self.tolerance

    def request_headers(self) -> list[tuple[str, str]]:
        """The GET request's headers; user headers replace the defaults case-insensitively.
        HTTP/1.1 sends them as they are; HTTP/2 (sseprobe_http2) maps Host to :authority."""
        headers = {
            "Host": self.host_header,
            "User-Agent": USER_AGENT,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "close",
        }
        user = {k.lower(): (k, v) for k, v in self.headers.items()}
        fields = [(name, value) for name, value in headers.items() if name.lower() not in user]
        fields.extend(user.values())
        return fields

    def request_bytes(self) -> bytes:
        """The HTTP/1.1 GET request."""
        lines = [f"GET {self.target} HTTP/1.1"]
        lines.extend("{}: {}".format(*kv) for kv in self.request_headers())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def ssl_context(
    cacert: str | None, insecure: bool, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """The client TLS context of ``check`` and ``load`` (raises ssl.SSLError / OSError);
    ``alpn``: the protocols offered (HTTP/1.1, or ``h2`` for ``check --http2``)."""
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        # Like curl --cacert: the given bundle replaces the system store.
        ctx = ssl.create_default_context(cafile=cacert)
    ctx.set_alpn_protocols(list(alpn))  # only what the transport speaks
    return ctx


class Endpoint:
    """Where a ProbeConfig's requests go and how: the one connect/TLS helper.

    Dials ``address`` (ADDR of ``resolve``, else the url's host) and, for https, hands
    ``host`` to TLS for SNI and certificate verification. ``check`` dials and shakes hands
    in two steps (each is a check of its own); ``load`` does both at once on its loop.
    """

    def __init__(self, config: ProbeConfig, alpn: tuple[str, ...] = ("http/1.1",)) -> None:
        self.alpn = alpn
        self.host = config.host
        self.address = config.connect_host
        self.port = config.port
        self.https = config.scheme == "https"
        self.cacert = config.cacert
        self.insecure = config.insecure
        self._context: ssl.SSLContext | None = None

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    def context(self) -> ssl.SSLContext | None:
        """The TLS context (built once; None for http). Raises ssl.SSLError or OSError
        when the cacert cannot be loaded."""
        if self.https and self._context is None:
            self._context = ssl_context(self.cacert, self.insecure, self.alpn)
        return self._context

    def dial(self, timeout: float) -> socket.socket:
        """A blocking TCP connection; raises OSError (word it with ``failure(exc, "tcp")``)."""
        return socket.create_connection((self.address, self.port), timeout)

    def handshake(self, raw: socket.socket, timeout: float) -> ssl.SSLSocket:
        """TLS over a dialled socket; raises OSError (``failure(exc, "tls")``)."""
        ctx = self.context()
        assert ctx is not None, "handshake on an http endpoint"
        raw.settimeout(timeout)
        return ctx.wrap_socket(raw, server_hostname=self.host)

    async def open(self, timeout: float) -> tuple[Any, Any]:
        """TCP and TLS on the running asyncio loop: (StreamReader, StreamWriter).

        Raises asyncio.TimeoutError or OSError (``failure(exc, "open")``).
        """
        import asyncio  # only load runs a loop: a check never imports it

        ctx = self.context()
        return await asyncio.wait_for(
            asyncio.open_connection(
                self.address,
                self.port,
                ssl=ctx,
                server_hostname=self.host if ctx is not None else None,
                limit=RECV_SIZE,
            ),
            timeout,
        )

    def failure(self, exc: BaseException, during: str) -> tuple[str, str]:
        """The failing check and its message for ``exc`` raised ``during`` "tcp", "tls" or
        "open" (both at once). Pass a TimeoutError for a timeout of any kind."""
        if isinstance(exc, socket.gaierror):
            return "connect", f"cannot resolve {self.address}: {exc.strerror or exc}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return "tls", f"certificate verification failed: {exc.verify_message or exc}"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            if during == "tls":
                return "tls", "TLS handshake timed out"
            both = " (or in the TLS handshake)" if during == "open" and self.https else ""
            return "connect", f"timed out connecting to {self.where}{both}"
        if isinstance(exc, ssl.SSLError) or during == "tls":
            return "tls", f"TLS handshake failed: {exc}"
        # asyncio words every refusal "Connect call failed (...)": the errno says why
        errno = getattr(exc, "errno", None)
        why = os.strerror(errno) if errno else (str(exc) or type(exc).__name__)
        return "connect", f"cannot connect to {self.where}: {why}"
