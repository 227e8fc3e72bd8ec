"""The webhook receiver of the `webhook` scenario: a small HTTP/1.1 server on loopback that answers
every POST with `200 {}` after a fixed delay (5 ms), counts deliveries and the connections they
came on, and checks Twenty's signature (docs/webhook-email.md, "CallWebhookJob").

    python -m benchmarks.receiver [--delay-ms 5] [--secret S]

It runs in its own process (so its CPU is never the worker's), on uvloop with a bare
asyncio.Protocol (no framework: it must not be the bottleneck; its own CPU per delivery is
reported next to the worker's). It prints {"event": "ready", "port": P} on stdout, then answers
each `stats` line on stdin with one JSON line of counters; it exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import resource
import sys
from dataclasses import asdict, dataclass

RESPONSE_BODY = b"{}"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(RESPONSE_BODY)).encode() + b"\r\n\r\n" + RESPONSE_BODY)
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Stats:
    deliveries: int = 0
    connections: int = 0  # opened since start
    open_connections: int = 0
    max_open_connections: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    signed_ok: int = 0
    signed_bad: int = 0
    unsigned: int = 0
    bad_requests: int = 0
    body_bytes: int = 0


class Receiver:
    def __init__(self, delay_s: float, secret: bytes | None) -> None:
        self.delay_s = delay_s
        self.secret = secret
        self.stats = Stats()

    def check_signature(self, headers: dict[bytes, bytes], body: bytes) -> None:
        signature = headers.get(b"x-twenty-webhook-signature")
        timestamp = headers.get(b"x-twenty-webhook-timestamp")
        if signature is None or timestamp is None:
            self.stats.unsigned += 1
            return
        if self.secret is None:
            return
        expected = hmac.new(self.secret, timestamp + b":" + body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, signature):
            self.stats.signed_ok += 1
        else:
            self.stats.signed_bad += 1


class Connection(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.stats = receiver.stats
        self.buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = transport  # type: ignore[assignment]
        self.stats.connections += 1
        self.stats.open_connections += 1
        self.stats.max_open_connections = max(self.stats.max_open_connections, self.stats.open_connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open_connections -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = bytes(self.buffer[:head_end]).split(b"\r\n")
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                length = -1
            if length < 0 or b"transfer-encoding" in headers:
                # Both clients under test send a Content-Length; anything else is a harness bug.
                self.stats.bad_requests += 1
                self.respond(BAD_REQUEST, close=True)
                return
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            body = bytes(self.buffer[head_end + 4 : end])
            del self.buffer[:end]
            self.stats.deliveries += 1
            self.stats.body_bytes += length
            self.receiver.check_signature(headers, body)
            close = headers.get(b"connection", b"").lower() == b"close"
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            # Answers go out in request order (equal delays keep their order in the timer heap).
            self.loop.call_later(self.receiver.delay_s, self.answer, close)

    def answer(self, close: bool) -> None:
        self.stats.in_flight -= 1
        self.respond(RESPONSE_CLOSE if close else RESPONSE, close)

    def respond(self, response: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(response)
        if close:
            self.transport.close()


async def serve(delay_s: float, secret: bytes | None) -> None:
    receiver = Receiver(delay_s, secret)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(receiver), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "ready", "port": port}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"event": "stats", **asdict(receiver.stats),
                              "cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receiver")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--secret", default=None, help="check X-Twenty-Webhook-Signature with this secret")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.delay_ms / 1000, args.secret.encode() if args.secret else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
