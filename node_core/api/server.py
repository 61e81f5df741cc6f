"""The control API server: composes routes, token auth and the metrics endpoint.

``GET /healthz`` and ``GET /metrics`` are open (Prometheus convention: scrapers carry no
token); every ``/api/v1`` route needs ``Authorization: Bearer <token>`` (401 without one or
with an unknown or revoked one). Roles are checked by the control model, not here. A node
bound to a non-loopback address with no tokens at all refuses to start: an open control
plane on a network is never a default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from node_core.api import badrequests
from node_core.api.routes import PRINCIPAL, ApiNode, Routes, error, json_response
from node_core.api.snapcache import SnapshotCache
from node_core.api.stream import StreamHub
from node_core.api.tokens import TokenError, TokenStore

__all__ = ["ApiServer", "ApiStartError", "check_exposure", "is_loopback"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiStartError(Exception):
    """The API cannot start as configured; the message is the one line to print."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, port: int, tokens: TokenStore) -> None:
    """Refuse an API on a non-loopback address while the node has no token (or an unreadable
    token file).

    A function of its own, not only part of :meth:`ApiServer.start`, because a command may
    have to know before it starts anything: ``zakura console`` runs a testnet and a full-screen
    app long before its node binds the API, and a refusal then would leave them to tear down.

    Raises:
        ApiStartError: The one line to print, naming ``--api`` and the command that fixes it.
    """
    try:
        tokens.reload_if_changed()
    except TokenError as exc:
        raise ApiStartError(str(exc)) from None
    if not is_loopback(host) and len(tokens) == 0:
        raise ApiStartError(
            f"--api {host}:{port} is not a loopback address and this node has no API "
            f"tokens: create one first with 'zakura token create --data-dir "
            f"{tokens.path.parent} --name NAME --role viewer|operator'"
        )


class ApiServer:
    """Serves one node's control API."""

    def __init__(self, node: ApiNode) -> None:
        self.node = node
        badrequests.install()  # a malformed request is one short line, never a traceback
        self.tokens = TokenStore(node.config.data_dir)
        self.app = web.Application(middlewares=[self._auth], client_max_size=1024 * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", make_aiohttp_handler(node.metrics.registry))
        # One snapshot build per 100 ms for every poller and stream client (snapcache.py).
        self.snapshots = SnapshotCache(node)
        self.routes = Routes(node, self.snapshots)
        self.routes.register(self.app)
        self.streams = StreamHub(node, cache=self.snapshots)
        self.app.router.add_get("/api/v1/stream", self.streams.handle)
        self.runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, host: str, port: int) -> None:
        check_exposure(host, port, self.tokens)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        addresses = self.runner.addresses
        self.host = host
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("this route needs an API token: Authorization: Bearer <token>")
        try:
            principal = self.tokens.authenticate(token.strip())
        except TokenError as exc:
            return error(500, str(exc))
        if principal is None:
            return _unauthorized("unknown or revoked API token")
        request[PRINCIPAL] = principal
        return await handler(request)

    async def _healthz(self, _request: web.Request) -> web.Response:
        node = self.node
        return json_response(
            {
                "status": "ok",
                "label": node.label,
                "peers": len(node.transport.peers),
                "uptime_s": round(node.uptime, 3),
            }
        )


def _unauthorized(message: str) -> web.Response:
    resp = error(401, message)
    resp.headers["WWW-Authenticate"] = 'Bearer realm="zakura"'
    return resp
