#!/usr/bin/env python3
"""Hold SSE streams through nginx and publish events, recording what every connection saw.

Runs inside the proxy container, standard library only. Each stream behaves like a
browser's EventSource: when its connection ends it waits the server's ``retry:`` delay
and reconnects with ``Last-Event-ID`` (the last id it received). A publisher POSTs an
event every --publish-interval seconds. Every request carries ``X-SSEProbe-Id`` (streams
``<prefix>-s<stream>-c<connection>``, publishes ``<prefix>-p<seq>``), so nginx's access
log tells which backend served it. Once every stream has had its ``:ok`` the file
--ready appears; when the file --stop appears the publisher stops, the streams get a
moment for the last events, close, and one JSON document goes to stdout:

    {"connections": [{"stream", "conn", "probe", "last_event_id_sent", "t_open", "t_ok",
                      "t_end", "status", "version", "end", "events": [[id, seq, t], ...]}],
     "publishes": [{"seq", "probe", "t_sent", "t_resp", "status", "id", "version", "error"}]}

Times are time.time() on this host (containers share the host's clock).
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
from typing import Any


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
        while not self.stop.is_set():
            raw = response.readline()
            if not raw:
                record["end"] = "eof"
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == ":ok" and record["t_ok"] is None:
                record["t_ok"] = time.time()
                self.ok.set()
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
                    record["events"].append([event_id, seq, time.time()])
                    if event_id is not None:
                        self.last_id = event_id
                event_id, data = None, []
        record["end"] = "stopped"


class Publisher(threading.Thread):
    def __init__(self, args: argparse.Namespace, context: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.args = args
        self.context = context
        self.stop = threading.Event()
        self.publishes: list[dict[str, Any]] = []

    def run(self) -> None:
        seq = 0
        while not self.stop.wait(self.args.publish_interval):
            seq += 1
            record: dict[str, Any] = {
                "seq": seq,
                "probe": f"{self.args.prefix}-p{seq}",
                "t_sent": time.time(),
                "t_resp": None,
                "status": None,
                "id": None,
                "version": None,
                "error": None,
            }
            self.publishes.append(record)
            connection = http.client.HTTPSConnection(
                self.args.host, self.args.port, context=self.context, timeout=10
            )
            try:
                body = json.dumps({"event": "tick", "data": {"seq": seq}})
                connection.request(
                    "POST",
                    self.args.publish_path,
                    body=body,
                    headers={
                        "Authorization": f"Bearer {self.args.token}",
                        "Content-Type": "application/json",
                        "X-SSEProbe-Id": record["probe"],
                    },
                )
                response = connection.getresponse()
                answer = response.read()
                record["t_resp"] = time.time()
                record["status"] = response.status
                record["version"] = response.getheader("X-App-Version")
                if response.status == 202:
                    record["id"] = str(json.loads(answer)["id"])
            except Exception as exc:
                record["error"] = repr(exc)
            finally:
                connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--path", default="/notify/events")
    parser.add_argument("--publish-path", default="/notify/publish")
    parser.add_argument("--publish-interval", type=float, default=0.5, help="0: no publishing")
    parser.add_argument("--token", required=True)
    parser.add_argument("--cacert", required=True)
    parser.add_argument("--timeout", type=float, default=10.0, help="silence that ends a stream")
    parser.add_argument("--prefix", default="cluster")
    parser.add_argument("--ready", required=True, help="created once every stream had :ok")
    parser.add_argument("--stop", required=True, help="stop when this file appears")
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.cacert)
    streams = [Stream(i, args, context) for i in range(args.streams)]
    for stream in streams:
        stream.start()
        time.sleep(0.1)
    for stream in streams:
        if not stream.ok.wait(30):
            print(f"stream {stream.index} got no :ok within 30 s", file=sys.stderr)
            return 1
    publisher = Publisher(args, context)
    if args.publish_interval > 0:
        publisher.start()
    with open(args.ready, "w") as ready:
        ready.write("ready\n")

    while not os.path.exists(args.stop):
        time.sleep(0.2)
    publisher.stop.set()
    if publisher.is_alive():
        publisher.join()
    time.sleep(1.5)  # the last events reach the streams
    for stream in streams:
        stream.stop.set()
    for stream in streams:
        stream.join(timeout=args.timeout + 5)
    json.dump(
        {
            "connections": [c for stream in streams for c in stream.connections],
            "publishes": publisher.publishes,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
