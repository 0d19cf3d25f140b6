"""A real redis-server on a free loopback port, for the broker-mode tests.

Debian's redis-server (installed by `make host`, tools/host-setup.sh). The server has a
password and AOF persistence like the one roles/sse_broker deploys, its own temp
folder, and can be stopped and started again on the same port and data (a broker
restart).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from sse_helpers import HOST

PASSWORD = "broker-test-9d2e"


class BrokerBusy(Exception):
    """Redis answered LOADING: it is up but not serving yet."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run `make host` (tools/host-setup.sh)"
        self.binary = binary
        self.folder = folder
        self.port = free_port() if port is None else port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--requirepass", PASSWORD,
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"redis-server exited:\n{self.log()}"
            if self.command("PING") == "PONG":
                return self
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, *args: str) -> str | None:
        """One command over RESP by hand (the test side needs no client library)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as conn:
                request = [("AUTH", PASSWORD), args]
                payload = b"".join(_resp(parts) for parts in request)
                conn.sendall(payload)
                reader = conn.makefile("rb")
                auth = reader.readline()
                assert auth.startswith(b"+OK"), auth
                return _read_reply(reader)
        except OSError:
            return None
        except BrokerBusy:
            return None  # still loading its data (AOF) after a start


def _resp(parts: tuple[str, ...]) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(reader: object) -> str | None:
    line: bytes = reader.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:].rstrip(b"\r\n").decode()
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        if rest.startswith("LOADING"):
            raise BrokerBusy(rest)
        raise AssertionError(f"redis error: {rest}")
    if kind == b"$":
        if rest == "-1":
            return None
        data: bytes = reader.read(int(rest) + 2)  # type: ignore[attr-defined]
        return data[:-2].decode()
    raise AssertionError(f"unexpected redis reply {line!r}")
