"""The read-only control API (aiohttp + orjson).

``GET /healthz``, ``GET /api/v1/snapshot`` and ``GET /metrics``. Nothing here changes node
state: every route is a GET, and any other method gets 405 from aiohttp's router. Write
actions and tokens come later, behind one policy check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from node_core.node import Node


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


class ApiServer:
    """Serves one node's read-only API."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/api/v1/snapshot", self._snapshot)
        self.app.router.add_get("/metrics", self._metrics)
        self.runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

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

    async def _snapshot(self, _request: web.Request) -> web.Response:
        return json_response(self.node.snapshot())

    async def _metrics(self, _request: web.Request) -> web.Response:
        body, content_type = self.node.metrics.render()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp
