#!/usr/bin/env python3
"""Stand-in SSE backend for the nginx scenario (standard library only).

GET /notify/events, /admin/events: `:ok` at once, then `:keepalive` every second, as
text/event-stream without Content-Length, ended by closing the connection (HTTP/1.0).
With `?echo` the stream first repeats the request headers as `:h name: value` comments,
so tests see what nginx passed on. GET /: 200 "hello". Usage: sse-stub HOST PORT
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

INTERVAL = 1.0
STREAMS = ("/notify/events", "/admin/events")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "sse-stub"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in STREAMS:
            self.stream(echo="echo" in url.query)
        elif url.path == "/":
            self.reply(200, b"hello\n")
        else:
            self.reply(404, b"not found\n")

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, echo: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(b":ok\n\n")
            if echo:
                for name, value in self.headers.items():
                    self.wfile.write(f":h {name.lower()}: {value}\n".encode())
                self.wfile.write(b"\n")
            self.wfile.flush()
            while True:
                time.sleep(INTERVAL)
                self.wfile.write(b":keepalive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
