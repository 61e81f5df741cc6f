"""How the console talks to a node: the :class:`NodeClient` protocol and its in-process
implementation.

Widgets see only what a client returns (snapshot documents, journal events as plain dicts,
action results), never node internals, so a remote client over the control API can drop in
later without touching a widget. Every action goes through :class:`ActionPolicy`, the one place
that decides whether actions are allowed at all (``--read-only``), and is carried out by the
node's control model (:func:`node_core.control.apply`), the same one the HTTP API calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from console.policy import ActionPolicy
from node_core.control import Action, ActionResult, apply

#: The console's name for a control-model action (what the operator asked for).
ActionRequest = Action

__all__ = [
    "ActionRequest",
    "ActionResult",
    "BriefSnapshots",
    "ClientUnavailable",
    "InProcessClient",
    "JournalRow",
    "NodeClient",
    "Snapshot",
]

if TYPE_CHECKING:
    from node_core.node import Node

Snapshot = dict[str, Any]
JournalRow = dict[str, Any]


class ClientUnavailable(Exception):
    """The node cannot be read right now (a remote node went away); the message says why and
    when the next try is. The app shows :attr:`short` in the status bar instead of failing."""

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        #: A few words for the status bar ("connection refused; retry in 3 s").
        self.short = short or message


class NodeClient(Protocol):
    """The console's only view of a node."""

    @property
    def read_only(self) -> bool: ...

    @property
    def description(self) -> str:
        """One line saying what this client is attached to, for the header."""
        ...

    async def snapshot(self) -> Snapshot: ...

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        """Journal events with ``seq`` greater than the given one, oldest first."""
        ...

    async def act(self, request: ActionRequest) -> ActionResult: ...


@runtime_checkable
class BriefSnapshots(Protocol):
    """A client that can read the brief document: each peer cut to what a Peers row draws.

    Why: at 1,000 peers the full document is 2.1 MB, and a console polling it four times a
    second spent most of each frame fetching and decoding fields no view of the frame draws
    (streams, limits, routine internals). The app polls this instead when its client has it,
    naming the peer whose detail view is open: that one peer's entry comes in full, in place
    of its brief one, so every view reads the same shape as before. ``snapshot()`` stays the
    full document (a recorder, an action's re-check).
    """

    async def brief_snapshot(self, detail: str | None = None) -> Snapshot: ...


def with_detail(doc: Snapshot) -> Snapshot:
    """Put a brief document's ``detail`` entry in place of that peer's brief one."""
    entry = doc.get("detail")
    if isinstance(entry, dict):
        label = entry.get("label")
        doc["peers"] = [entry if p.get("label") == label else p for p in doc.get("peers") or ()]
    return doc


class InProcessClient:
    """A client for a node running in this process."""

    def __init__(self, node: Node, *, read_only: bool = False) -> None:
        self.node = node
        self.policy = ActionPolicy(read_only=read_only)

    @property
    def read_only(self) -> bool:
        return self.policy.read_only

    @property
    def description(self) -> str:
        return f"in-process node {self.node.label}"

    async def snapshot(self) -> Snapshot:
        return self.node.snapshot()

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        # Oldest first, at most ``limit``: the console pages forward and never skips events.
        return [e.to_dict() for e in self.node.journal.since(seq, limit)]

    async def act(self, request: ActionRequest) -> ActionResult:
        """Through the control model, like every other surface: policy, then the injector."""
        return await apply(
            self.node, request, principal=self.policy.principal, policy=self.policy.control
        )
