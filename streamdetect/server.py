"""The WebSocket server: `/ws` pushes JSON messages, `/healthz` answers plain HTTP. Loopback unless configured.

Clients may filter at connect time (`/ws?streams=cam1,cam2&types=scores,alert`) or later by sending
{"type": "subscribe", "streams": [...], "types": [...]}. With a token configured, a client must send
"Authorization: Bearer TOKEN" or `?token=TOKEN` (browsers cannot set headers on WebSockets).
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import mimetypes
import re
from importlib.resources import files
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from streamdetect.bus import Bus
from streamdetect.events import api as events_api
from streamdetect.messages import Error, Subscribe

log = logging.getLogger(__name__)


def _query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


def _csv(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    return frozenset(v for part in values for v in part.split(",") if v)


class WebSocketServer:
    def __init__(self, bus: Bus, hello: Callable[[], str], health: Callable[[], dict], host: str = "127.0.0.1",
                 port: int = 8765, token: str | None = None, uploads=None,
                 metrics: Callable[[], tuple[bytes, str]] | None = None, events=None):
        self.bus, self.hello, self.health, self.uploads = bus, hello, health, uploads
        self.events = events  # the event recorder behind /api/events (None: store disabled)
        self.metrics = metrics  # () -> (Prometheus text, content type)
        self.host, self.port, self.token = host, port, token
        self._server = None

    async def start(self) -> int:
        self._server = await serve(self._handle, self.host, self.port, process_request=self._http,
                                   max_size=2**21, ping_interval=20, ping_timeout=20)  # 2 MiB: upload chunks
        self.port = self._server.sockets[0].getsockname()[1]  # the real port when asked for port 0
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _refused(self, connection: ServerConnection, request):
        """The answer for a request that may not see the feeds, events or metrics; None when it may. Browsers from
        another origin are refused (any web page could otherwise read a loopback service), then the token."""
        if not _same_origin(request):
            return connection.respond(http.HTTPStatus.FORBIDDEN, "cross-origin request refused\n")
        if not self._authorised(request):
            return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                      "missing or wrong token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN\n")
        return None

    def _authorised(self, request) -> bool:
        if not self.token:
            return True
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else (_query(request.path).get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _http(self, connection: ServerConnection, request):
        """Plain HTTP before any WebSocket upgrade: health, the dashboard's files, upload results, auth."""
        path = urlsplit(request.path).path
        if path == "/healthz":
            health = self.health()
            status = http.HTTPStatus.OK if health["status"] == "ok" else http.HTTPStatus.SERVICE_UNAVAILABLE
            return _reply(status, json.dumps(health).encode(), "application/json")
        if path == "/metrics" and self.metrics is not None:
            if (refused := self._refused(connection, request)) is not None:
                return refused
            body, content_type = self.metrics()
            return _reply(http.HTTPStatus.OK, body, content_type)
        if path.startswith("/api/"):
            if (refused := self._refused(connection, request)) is not None:
                return refused
            status, body, content_type, headers = await events_api.handle(
                self.events, request.method, path, urlsplit(request.path).query, request.headers.get("Range"))
            return _reply(status, body, content_type, headers)
        if request.method != "GET":
            return connection.respond(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method} is only allowed on /api/events/ID\n")
        if path == "/favicon.ico":
            return _dashboard_file("favicon.svg", "image/svg+xml")
        if path in ("/", "/index.html") or path.startswith("/static/"):
            return _dashboard_file("index.html" if not path.startswith("/static/") else path[len("/static/"):])
        if path in ("/ws", "/upload") or path.startswith("/uploads/"):
            if (refused := self._refused(connection, request)) is not None:
                return refused
            if path.startswith("/uploads/"):
                video = self.uploads.result_path(path[len("/uploads/"):]) if self.uploads else None
                if video is None:
                    return connection.respond(http.HTTPStatus.NOT_FOUND, "no such upload result\n")
                body = await asyncio.to_thread(video.read_bytes)  # megabytes: keep the event loop free
                return _reply(http.HTTPStatus.OK, body, "video/mp4")
            if path == "/upload" and self.uploads is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "uploads are not enabled on this server\n")
            return None  # proceed with the WebSocket handshake
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found: the dashboard is at /, messages at /ws, health at /healthz\n")

    async def _handle(self, ws: ServerConnection) -> None:
        if urlsplit(ws.request.path).path == "/upload":
            return await self.uploads.handle(ws)
        query = _query(ws.request.path)
        try:
            subscription = Subscribe(_csv(query.get("streams")), _csv(query.get("types")))  # validates itself
        except ValueError as exc:
            await ws.send(Error(f"bad subscription in URL: {exc}").to_json())
            await ws.close(1008, "bad subscription")
            return
        await ws.send(self.hello())
        client = self.bus.subscribe(subscription)
        writer = asyncio.create_task(self._write(ws, client))
        try:
            async for text in ws:  # client -> server: subscription changes only
                try:
                    client.subscription = Subscribe.parse(text)
                except ValueError as exc:
                    await ws.send(Error(f"ignored message: {exc}").to_json())
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            self.bus.unsubscribe(client)

    @staticmethod
    async def _write(ws: ServerConnection, client) -> None:
        try:
            while True:
                await ws.send(await client.get())
        except ConnectionClosed:
            pass


_STATIC_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _same_origin(request) -> bool:
    """Browsers send Origin on WebSocket upgrades; only our own dashboard (same host:port) may connect.
    Non-browser clients send no Origin and are governed by the token alone."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("Host", "")


def _reply(status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                       *(extra or {}).items()])
    return Response(status.value, status.phrase, headers, body)


def _dashboard_file(name: str, content_type: str | None = None) -> Response:
    """A file of the bundled dashboard; names are checked so no path can leave that folder."""
    resource = files("streamdetect.dashboard") / name
    if not _STATIC_NAME.match(name) or name.endswith(".py") or not resource.is_file():
        return _reply(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _reply(http.HTTPStatus.OK, resource.read_bytes(), content_type)
