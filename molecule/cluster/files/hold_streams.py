#!/usr/bin/env python3
"""Hold SSE streams through nginx and publish events, recording what every connection saw.

Runs inside the proxy container, standard library only. Each stream behaves like a
browser's EventSource: when its connection ends it waits the server's ``retry:`` delay
and reconnects with ``Last-Event-ID`` (the last id it received). A publisher POSTs one
new event every --publish-interval seconds, straight to the backends' own publish URLs
(--publish-to, several: event n goes to URL n mod their number, so consecutive events go
to alternating backends), on a fixed schedule that nothing delays. A publish answered 503
is sent again to the same URL after its ``Retry-After``, one refused before it was sent
(connection refused) after 1 s; until accepted, at most --max-attempts times. Every
request carries ``X-SSEProbe-Id`` (streams ``<prefix>-s<stream>-c<connection>``), so
nginx's access log tells which backend served a stream. Once every stream has had its
``:ok`` the file --ready appears; when the file --stop appears the publisher stops (its
pending retries still run), the streams get a moment for the last events, close, and
one JSON document goes to stdout:

    {"connections": [{"stream", "conn", "probe", "last_event_id_sent", "t_open", "t_ok",
                      "t_end", "status", "version", "end", "events": [[id, seq, t], ...],
                      "keepalives": [t, ...], "max_silence"}],
     "publishes": [{"seq", "attempt", "target", "t_sent", "t_resp", "status",
                    "retry_after", "id", "error", "sent"}]}

``publishes`` holds every attempt; ``sent`` is false when the request never left (the
connection was refused), so the event cannot be in the log. Times are time.time() on
this host (containers share the host's clock).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# how long after a refused connection the publisher tries again
REFUSED_RETRY_S = 1.0


class Stream(threading.Thread):
    def __init__(self, index: int, args: argparse.Namespace, context: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.args = args
        self.context = context
        self.stop = threading.Event()
        self.connections: list[dict[str, Any]] = []
        self.last_id: str | None = None
        self.retry = 2.0
        self.ok = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            record: dict[str, Any] = {
                "stream": self.index,
                "conn": number,
                "probe": f"{self.args.prefix}-s{self.index}-c{number}",
                "last_event_id_sent": self.last_id,
                "t_open": time.time(),
                "t_ok": None,
                "t_end": None,
                "status": None,
                "version": None,
                "end": None,
                "events": [],
                "keepalives": [],
                "max_silence": 0.0,
            }
            self.connections.append(record)
            connection = http.client.HTTPSConnection(
                self.args.host, self.args.port, context=self.context, timeout=self.args.timeout
            )
            try:
                headers = {
                    "Accept": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-SSEProbe-Id": record["probe"],
                }
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                connection.request("GET", self.args.path, headers=headers)
                response = connection.getresponse()
                record["status"] = response.status
                record["version"] = response.getheader("X-App-Version")
                if response.status == 200:
                    self.read(response, record)
                else:
                    record["end"] = f"status {response.status}"
            except Exception as exc:  # any failure ends this connection; it is recorded
                record["end"] = record["end"] or f"error: {exc!r}"
            finally:
                record["t_end"] = time.time()
                connection.close()
            if self.stop.is_set():
                record["end"] = record["end"] or "stopped"
                break
            self.stop.wait(self.retry)

    def read(self, response: http.client.HTTPResponse, record: dict[str, Any]) -> None:
        event_id: str | None = None
        data: list[str] = []
        last_line = time.time()
        while not self.stop.is_set():
            raw = response.readline()
            now = time.time()
            if record["t_ok"] is not None:  # silence while held: between lines after :ok
                record["max_silence"] = max(record["max_silence"], now - last_line)
            last_line = now
            if not raw:
                record["end"] = "eof"
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == ":ok" and record["t_ok"] is None:
                record["t_ok"] = now
                self.ok.set()
            elif line.startswith(":"):
                record["keepalives"].append(now)
            elif line.startswith("retry:"):
                self.retry = int(line[6:].strip()) / 1000
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line == "":
                if data:
                    try:
                        seq = json.loads("\n".join(data)).get("seq")
                    except (ValueError, AttributeError):
                        seq = None
                    record["events"].append([event_id, seq, now])
                    if event_id is not None:
                        self.last_id = event_id
                event_id, data = None, []
        record["end"] = "stopped"


class Publisher(threading.Thread):
    """One new event every interval, to the publish URLs in turn; retries on their own
    schedule (a pool sends, so a slow answer never delays the next event)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(daemon=True)
        self.args = args
        self.stop = threading.Event()
        self.publishes: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.pending = 0
        self.idle = threading.Condition(self.lock)

    def run(self) -> None:
        seq = 0
        start = time.monotonic()
        interval = self.args.publish_interval
        while not self.stop.wait(max(0.0, start + (seq + 1) * interval - time.monotonic())):
            seq += 1
            target = self.args.publish_to[(seq - 1) % len(self.args.publish_to)]
            self.submit(seq, 1, target)

    def submit(self, seq: int, attempt: int, target: str, delay: float = 0.0) -> None:
        with self.lock:
            self.pending += 1
        self.pool.submit(self.send, seq, attempt, target, delay)

    def send(self, seq: int, attempt: int, target: str, delay: float) -> None:
        try:
            time.sleep(delay)
            record = self.post(seq, attempt, target)
            with self.lock:
                self.publishes.append(record)
            again = None
            if record["status"] == 503:
                again = float(record["retry_after"] or 1)
            elif not record["sent"]:
                again = REFUSED_RETRY_S
            if again is not None and attempt < self.args.max_attempts:
                self.submit(seq, attempt + 1, target, again)
        finally:
            with self.lock:
                self.pending -= 1
                self.idle.notify_all()

    def post(self, seq: int, attempt: int, target: str) -> dict[str, Any]:
        url = urllib.parse.urlsplit(target)
        record: dict[str, Any] = {
            "seq": seq,
            "attempt": attempt,
            "target": url.netloc,
            "t_sent": time.time(),
            "t_resp": None,
            "status": None,
            "retry_after": None,
            "id": None,
            "error": None,
            "sent": False,
        }
        connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            connection.connect()
            record["sent"] = True  # from here the server may have taken the event
            body = json.dumps({"event": "tick", "data": {"seq": seq, "attempt": attempt}})
            connection.request(
                "POST",
                url.path,
                body=body,
                headers={
                    "Authorization": f"Bearer {self.args.token}",
                    "Content-Type": "application/json",
                },
            )
            response = connection.getresponse()
            answer = response.read()
            record["t_resp"] = time.time()
            record["status"] = response.status
            record["retry_after"] = response.getheader("Retry-After")
            if response.status == 202:
                record["id"] = str(json.loads(answer)["id"])
        except Exception as exc:
            record["error"] = repr(exc)
        finally:
            connection.close()
        return record

    def finish(self, timeout: float) -> None:
        """Stop making new events; wait for the sends and retries under way."""
        self.stop.set()
        if self.is_alive():
            self.join()
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.pending and time.monotonic() < deadline:
                self.idle.wait(deadline - time.monotonic())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--path", default="/notify/events")
    parser.add_argument(
        "--publish-to", action="append", default=[], help="a backend's publish URL (repeat)"
    )
    parser.add_argument("--publish-interval", type=float, default=0.2, help="0: no publishing")
    parser.add_argument("--max-attempts", type=int, default=30)
    parser.add_argument("--token", required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--timeout", type=float, default=10.0, help="silence that ends a stream")
    parser.add_argument("--prefix", default="cluster")
    parser.add_argument("--ready", required=True, help="created once every stream had :ok")
    parser.add_argument("--stop", required=True, help="stop when this file appears")
    args = parser.parse_args()
    if args.publish_interval > 0 and not args.publish_to:
        parser.error("--publish-to is needed to publish")

    context = ssl.create_default_context(cafile=args.cacert)
    streams = [Stream(i, args, context) for i in range(args.streams)]
    for stream in streams:
        stream.start()
        time.sleep(0.1)
    for stream in streams:
        if not stream.ok.wait(30):
            print(f"stream {stream.index} got no :ok within 30 s", file=sys.stderr)
            return 1
    publisher = Publisher(args)
    if args.publish_interval > 0:
        publisher.start()
    with open(args.ready, "w") as ready:
        ready.write("ready\n")

    while not os.path.exists(args.stop):
        time.sleep(0.2)
    publisher.finish(timeout=30)
    time.sleep(1.5)  # the last events reach the streams
    for stream in streams:
        stream.stop.set()
    for stream in streams:
        stream.join(timeout=args.timeout + 5)
    with publisher.lock:
        publishes = sorted(publisher.publishes, key=lambda p: (p["seq"], p["attempt"]))
    json.dump(
        {
            "connections": [c for stream in streams for c in stream.connections],
            "publishes": publishes,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
