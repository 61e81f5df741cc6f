"""The control API's routes: reads for any token, writes through the one control model.

Every write builds an :class:`~node_core.control.Action` from the URL and a JSON body and
calls :func:`~node_core.control.apply`, the same function the console's keys call, so the
API refuses exactly what the console refuses, with the same words. The HTTP status says
which refusal it was (:data:`STATUS`); the body always carries ``error`` (a sentence) and,
for a bad request, ``field``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from node_core.api.snapcache import SnapshotCache
from node_core.control import (
    ACTIONS,
    LINK_ACTIONS,
    Action,
    ActionInvalid,
    ActionResult,
    LinkAction,
    Principal,
    Refusal,
    apply,
)
from node_core.observe.snapshot import (
    SnapshotSource,
    misbehavior_rows,
    misbehavior_tally,
    parked_rows,
    peer_row,
)


class ApiConfig(Protocol):
    """The settings the API reads (a :class:`~node_core.node.NodeConfig`)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def allow_faults(self) -> bool: ...


class ApiNode(SnapshotSource, Protocol):
    """The node an API serves (a :class:`~node_core.node.Node`, which starts its API and so
    is not imported here; docs/ARCHITECTURE.md, "Layers and packages")."""

    @property
    def config(self) -> ApiConfig: ...
    def snapshot(self) -> dict[str, Any]: ...


#: Largest JSON body a write route reads (a real one is under 100 bytes).
MAX_BODY = 64 * 1024
#: Longest ``detail`` label a snapshot request may name (a real one is 21 characters).
MAX_LABEL = 200
#: Journal rows per page at most.
MAX_JOURNAL_LIMIT = 5000
DEFAULT_JOURNAL_LIMIT = 500

#: HTTP status of each refusal.
STATUS: dict[Refusal, int] = {
    Refusal.ROLE: 403,
    Refusal.READ_ONLY: 403,
    Refusal.FAULTS_DISABLED: 403,
    Refusal.UNKNOWN_PEER: 404,
    Refusal.NOT_RUNNING: 409,
    Refusal.NOT_PARKED: 409,
    Refusal.INVALID: 422,
    Refusal.NO_EFFECT: 504,
}

#: Where the auth middleware leaves the request's :class:`Principal`.
PRINCIPAL = web.RequestKey("principal", Principal)


def json_response(obj: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error(status: int, message: str, **extra: object) -> web.Response:
    return json_response({"error": message, **extra}, status)


class Routes:
    """The handlers of one node's API."""

    def __init__(self, node: ApiNode, snapshots: SnapshotCache | None = None) -> None:
        self.node = node
        #: Shared with the stream: one build per 100 ms however many consoles poll.
        self.snapshots = SnapshotCache(node) if snapshots is None else snapshots

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/whoami", self.whoami)
        r.add_get("/api/v1/snapshot", self.snapshot)
        r.add_get("/api/v1/journal", self.journal)
        r.add_get("/api/v1/misbehavior", self.misbehavior)
        r.add_get("/api/v1/peers/{label}", self.peer)
        r.add_post("/api/v1/peers/{label}/{action}", self.act)
        r.add_get("/api/v1/links", self.links)
        r.add_post("/api/v1/links/{action}", self.link_act)

    # ------------------------------------------------------------------ reads
    async def whoami(self, request: web.Request) -> web.Response:
        """The token's name and role, and the node: what a remote console shows and obeys."""
        principal = request[PRINCIPAL]
        node = self.node
        return json_response(
            {
                "name": principal.name,
                "role": principal.role.value,
                "node": node.label,
                "boot_id": getattr(node, "boot_id", None),
                "allow_faults": node.config.allow_faults,
            }
        )

    async def snapshot(self, request: web.Request) -> web.Response:
        """The snapshot document; ``?peers=brief`` cuts each peer to what a Peers row draws
        (:class:`~node_core.observe.schema.BriefSnapshot`, what the console polls) and
        ``&detail=LABEL`` then adds that peer's full entry. ``peers=full`` is the default."""
        peers = request.query.get("peers", "full")
        if peers not in ("full", "brief"):
            return error(422, "peers must be full or brief", field="peers")
        detail = request.query.get("detail")
        if detail is not None and (peers != "brief" or len(detail) > MAX_LABEL):
            return error(
                422, f"detail needs peers=brief and a label of at most {MAX_LABEL} characters",
                field="detail",
            )  # fmt: skip
        body = self.snapshots.plain() if peers == "full" else self.snapshots.brief(detail)
        return web.Response(body=body, content_type="application/json")

    async def journal(self, request: web.Request) -> web.Response:
        """``?since=SEQ&limit=N``: rows after SEQ, oldest first, never skipping one that is
        still kept; ``first_seq`` says where the kept journal starts, so a client that asks
        below it knows rows were overwritten (``gap``)."""
        since = _int_param(request, "since", 0, 0, 2**62)
        limit = _int_param(request, "limit", DEFAULT_JOURNAL_LIMIT, 1, MAX_JOURNAL_LIMIT)
        journal = self.node.journal
        rows = [e.to_dict() for e in journal.since(since, limit)]
        return json_response(
            {
                "boot_id": getattr(self.node, "boot_id", None),
                "first_seq": journal.first_seq,
                "last_seq": journal.last_seq,
                "gap": since + 1 < journal.first_seq and journal.last_seq > 0,
                "rows": rows,
            }
        )

    async def misbehavior(self, _request: web.Request) -> web.Response:
        """The snapshot's misbehavior sections, built alone (not the whole snapshot)."""
        node = self.node
        return json_response({"records": misbehavior_rows(node), "tally": misbehavior_tally(node)})

    async def peer(self, request: web.Request) -> web.Response:
        """The peer detail document: its snapshot entry, its misbehavior, its parked record,
        each built alone from the snapshot's per-part builders (not the whole snapshot)."""
        label = request.match_info["label"]
        node = self.node
        peer = peer_row(node, label)
        if peer is None:
            return error(404, f"no connected peer {label[:64]!r}", field="label")
        return json_response(
            {
                "peer": peer,
                "misbehavior": [r for r in misbehavior_rows(node) if r["label"] == label],
                "parked": [p for p in parked_rows(node) if p["label"] == label],
            }
        )

    async def links(self, _request: web.Request) -> web.Response:
        """The active link rules, one per node id that has one (none: an empty list)."""
        return json_response({"links": self.node.faults.link_rows()})

    # ------------------------------------------------------------------ writes
    async def act(self, request: web.Request) -> web.Response:
        kind = request.match_info["action"]
        label = request.match_info["label"]
        if kind not in ACTIONS:
            return error(
                404, f"unknown action {kind[:40]!r}; one of: {', '.join(ACTIONS)}", field="action"
            )
        fields = await _json_body(request)
        if isinstance(fields, web.Response):
            return fields
        try:
            action = Action.from_fields(kind, label, fields)
        except ActionInvalid as exc:
            return error(422, str(exc), field=exc.field, refusal=Refusal.INVALID.value)
        result = await apply(self.node, action, principal=_who(request))
        self.snapshots.invalidate()  # the next snapshot shows what the write did
        return _answer(result)

    async def link_act(self, request: web.Request) -> web.Response:
        """``POST /api/v1/links/{partition|delay|bandwidth|heal}``: a link fault, through the
        same control model, refusals and statuses as the peer actions."""
        kind = request.match_info["action"]
        if kind not in LINK_ACTIONS:
            return error(
                404,
                f"unknown link action {kind[:40]!r}; one of: {', '.join(LINK_ACTIONS)}",
                field="action",
            )
        fields = await _json_body(request)
        if isinstance(fields, web.Response):
            return fields
        try:
            action = LinkAction.from_fields(kind, fields)
        except ActionInvalid as exc:
            return error(422, str(exc), field=exc.field, refusal=Refusal.INVALID.value)
        result = await apply(self.node, action, principal=_who(request))
        self.snapshots.invalidate()  # the next snapshot shows what the write did
        return _answer(result)


def _who(request: web.Request) -> Principal:
    """The token's principal, with the client's address (journaled as ``remote``)."""
    principal = request[PRINCIPAL]
    return Principal(principal.name, principal.role, request.remote)


def _answer(result: ActionResult) -> web.Response:
    """200 with the result, or the refusal's status with ``error`` added."""
    if result.ok:
        return json_response(result.to_dict())
    assert result.refusal is not None
    return json_response({"error": result.message, **result.to_dict()}, STATUS[result.refusal])


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPUnprocessableEntity(
            body=orjson.dumps({"error": f"{name} must be an integer", "field": name}),
            content_type="application/json",
        ) from None
    if not low <= value <= high:
        raise web.HTTPUnprocessableEntity(
            body=orjson.dumps(
                {"error": f"{name} must be from {low} to {high} (got {value})", "field": name}
            ),
            content_type="application/json",
        )
    return value


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object ({} for an empty body), or the error response to send."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return error(413, f"body larger than {MAX_BODY} bytes", field="body")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return error(413, f"body larger than {MAX_BODY} bytes", field="body")
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return error(422, f"body is not JSON: {str(exc)[:80]}", field="body")
    if not isinstance(doc, dict):
        return error(422, "body must be a JSON object", field="body")
    return doc
