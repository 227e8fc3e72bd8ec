"""A small webhook receiver of the kind many teams run: Python's stdlib HTTP server (one thread per
connection, HTTP/1.1 keep-alive) with a listen backlog of 5. It counts the TCP connections it
accepts, so a test can bound how many a worker opens, and records every request body.

A burst of connections beyond the backlog is what a client per job sending 20 payloads at once
produces (three such jobs: 60 connections at the same moment); the kernel then drops or resets
the excess.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

BACKLOG = 5


@dataclass
class Seen:
    bodies: list[bytes] = field(default_factory=list)
    accepted: int = 0
    # Requests served per accepted connection (connection number -> count).
    per_connection: dict[int, int] = field(default_factory=dict)
    hosts_per_connection: dict[int, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True

    def __init__(self, seen: Seen, delay_s: float) -> None:
        self.seen = seen
        self.delay_s = delay_s
        # Socket file number -> the number of the accepted connection it carries now.
        self.numbers: dict[int, int] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.seen.lock:
            self.seen.accepted += 1
            number = self.seen.accepted
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.numbers[conn.fileno()] = number
        return conn, address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # Headers and body go out in separate writes; without this, Nagle's algorithm and the client's
    # delayed ACK add 40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        number = self.server.numbers.get(self.connection.fileno(), 0)
        seen = self.server.seen
        with seen.lock:
            seen.bodies.append(body)
            seen.per_connection[number] = seen.per_connection.get(number, 0) + 1
            seen.hosts_per_connection.setdefault(number, set()).add(self.headers.get("Host", ""))
        time.sleep(self.server.delay_s)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class SmallReceiver:
    """`with SmallReceiver() as r:` serves on `r.url(path)`; `r.seen` has what arrived."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.seen = Seen()
        self._server = _Server(self.seen, delay_s)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> SmallReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
