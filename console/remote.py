"""A :class:`~console.client.NodeClient` over a node's control API: ``zakura attach``.

The console polls it exactly as it polls an in-process node (snapshot, journal since a
seq, actions), so every view and key works unchanged. What is remote-only lives here:

- **Who we are.** ``GET /api/v1/whoami`` says the token's role; a viewer token makes the
  client read-only, so the app shows READ-ONLY and its policy refuses actions before any
  request is sent (the node would refuse them too, with 403).
- **The node going away.** A failed request marks the node unreachable and schedules the
  next try with a growing backoff (1 s doubling to 30 s); until then every call fails at
  once with :class:`NodeUnreachable`, whose message (also :attr:`description`) counts down
  to the next try, and the app shows it instead of stale numbers. The first request that
  succeeds resumes everything.
- **A restart.** The snapshot's ``boot_id`` changes when the node restarted and its journal
  ``seq`` started again; the console's state then reads the journal from the start, so no row
  of the new run is lost.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from console.client import (
    ActionRequest,
    ActionResult,
    ClientUnavailable,
    JournalRow,
    Snapshot,
    with_detail,
)
from node_core.control import Refusal

__all__ = ["NodeUnreachable", "RemoteNodeClient"]

#: Backoff between tries while the node is unreachable.
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0
REQUEST_TIMEOUT = 5.0
#: Actions wait for the node to observe their effect (up to 5 s) before answering.
ACTION_TIMEOUT = 15.0


class NodeUnreachable(ClientUnavailable):
    """The node did not answer; the message says why and when the next try is."""


class TokenRefused(Exception):
    """The node refused the token (401): retrying will not help."""


class RemoteNodeClient:
    """The console's client for a node at ``url`` (``http://HOST:PORT``) with ``token``."""

    def __init__(self, url: str, token: str, *, read_only: bool = False) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._forced_read_only = read_only
        self.role: str | None = None
        self.name: str | None = None
        self.node_label: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._down_since: float | None = None
        self._next_try = 0.0
        self._backoff = FIRST_BACKOFF
        self._error = ""
        self.failures = 0

    # ------------------------------------------------------------------ NodeClient
    @property
    def read_only(self) -> bool:
        return self._forced_read_only or self.role != "operator"

    @property
    def description(self) -> str:
        where = f"{self.node_label or 'node'} at {self.url}"
        if self._down_since is not None:
            wait = max(0.0, self._next_try - time.monotonic())
            return f"{where}: unreachable ({self._error}); next try in {wait:.0f} s"
        who = "" if self.name is None else f" as {self.name} ({self.role})"
        return f"{where}{who}"

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    async def connect(self) -> None:
        """Learn who we are (the token's role); raises :class:`TokenRefused` on a bad token."""
        doc = await self._get("/api/v1/whoami")
        self.role, self.name = str(doc["role"]), str(doc["name"])
        self.node_label = str(doc["node"])

    async def snapshot(self) -> Snapshot:
        doc: Snapshot = await self._get("/api/v1/snapshot")
        self.node_label = str(doc.get("node", {}).get("label") or self.node_label)
        return doc

    async def brief_snapshot(self, detail: str | None = None) -> Snapshot:
        """``?peers=brief``: what the console polls (see :class:`console.client.BriefSnapshots`);
        a node built before it ignores the query and sends the full document."""
        path = "/api/v1/snapshot?peers=brief"
        if detail is not None:
            path += "&detail=" + quote(detail, safe="")
        doc: Snapshot = with_detail(await self._get(path))
        self.node_label = str(doc.get("node", {}).get("label") or self.node_label)
        return doc

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        doc = await self._get(f"/api/v1/journal?since={max(0, seq)}&limit={limit}")
        rows: list[JournalRow] = doc["rows"]
        return rows

    async def act(self, request: ActionRequest) -> ActionResult:
        body: dict[str, Any] = {}
        if request.service is not None:
            body["service"] = request.service
        if request.seconds is not None:
            body["seconds"] = request.seconds
        if request.rate is not None:
            body["rate"] = request.rate
        path = f"/api/v1/peers/{request.label}/{request.kind}"
        try:
            session = self._http()
            async with session.post(
                self.url + path,
                data=orjson.dumps(body),
                headers={**self._auth(), "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=ACTION_TIMEOUT),
            ) as resp:
                doc = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self._went_down(exc)
            return ActionResult(False, f"{request.describe()}: {self._error}")
        refusal = doc.get("refusal")
        return ActionResult(
            bool(doc.get("ok")),
            str(doc.get("message") or doc.get("error") or ""),
            doc.get("fault_id"),
            doc.get("effect"),
            doc.get("reason"),
            None if refusal is None else Refusal(refusal),
            doc.get("field"),
        )

    def retarget(self, url: str, token: str) -> None:
        """Read the node at ``url`` with ``token`` from now on (a restarted node may come back
        on another port, with a fresh token); the next read tries at once."""
        url = url.rstrip("/")
        if (url, token) == (self.url, self._token):
            return
        self.url, self._token = url, token
        self._next_try = 0.0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            )
        return self._session

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _get(self, path: str) -> Any:
        now = time.monotonic()
        if self._down_since is not None and now < self._next_try:
            raise NodeUnreachable(self.description, self._short())
        try:
            async with self._http().get(self.url + path, headers=self._auth()) as resp:
                if resp.status == 401:
                    raise TokenRefused(
                        f"{self.url} refused the token (401): create one with "
                        "'zakura token create' on that node"
                    )
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=resp.reason or ""
                    )
                doc = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError) as exc:
            self._went_down(exc)
            raise NodeUnreachable(self.description, self._short()) from None
        self._came_back()
        return doc

    def _short(self) -> str:
        wait = max(0.0, self._next_try - time.monotonic())
        return f"{self._error}; next try in {wait:.0f} s"

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._backoff = FIRST_BACKOFF
        else:
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self.failures += 1
        self._next_try = now + self._backoff
        self._error = _describe(exc)

    def _came_back(self) -> None:
        self._down_since = None
        self._backoff = FIRST_BACKOFF
        self._error = ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    if isinstance(exc, TimeoutError):
        return "no answer within 5 s"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return exc.__class__.__name__
