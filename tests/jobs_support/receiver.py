"""A real HTTP webhook receiver on loopback that checks requests the way a Twenty webhook consumer
does: the HMAC-SHA256 signature over `<X-Twenty-Webhook-Timestamp>:<raw body>` with the webhook's
secret, a recent millisecond timestamp, a 32-hex-character nonce.

Plain asyncio (no web framework): it runs in the test's event loop, speaks HTTP/1.1 with
keep-alive, and answers each path with a scripted list of responses (then 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

NONCE = re.compile(r"^[0-9a-f]{32}$")
MAX_SKEW_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    signature_ok: bool | None  # None: no signature headers
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, secret_for_path: dict[str, str] | None = None) -> None:
        self.secret_for_path = dict(secret_for_path or {})
        self.script: dict[str, list[Reply]] = {}
        self.requests: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def reply(self, path: str, *replies: Reply) -> None:
        self.script.setdefault(path, []).extend(replies)

    def received(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Received]:
        return [r for r in self.received(path) if 200 <= r.status < 300]

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = target.split("?", 1)[0]
                request = Received(method, path, headers, body, self._check_signature(path, headers, body))
                self.requests.append(request)
                script = self.script.get(path)
                reply = script.pop(0) if script else Reply()
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                request.status = reply.status
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\nContent-Length: 2\r\n{extra}Connection: keep-alive\r\n\r\nok"
                    .encode("latin-1")
                )
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _check_signature(self, path: str, headers: dict[str, str], body: bytes) -> bool | None:
        signature = headers.get("x-twenty-webhook-signature")
        timestamp = headers.get("x-twenty-webhook-timestamp")
        nonce = headers.get("x-twenty-webhook-nonce")
        if signature is None and timestamp is None:
            return None
        secret = self.secret_for_path.get(path)
        if not secret or not signature or not timestamp or not nonce or not timestamp.isdigit():
            return False
        if abs(int(time.time() * 1000) - int(timestamp)) > MAX_SKEW_MS or not NONCE.match(nonce):
            return False
        expected = hmac.new(secret.encode(), timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)
