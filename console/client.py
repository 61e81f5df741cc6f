"""How the console talks to a node: the :class:`NodeClient` protocol and its in-process
implementation.

Widgets see only what a client returns (snapshot documents, journal events as plain dicts,
action results), never node internals, so a remote client over the control API can drop in
later without touching a widget. Every action goes through :class:`ActionPolicy`, the one place
that decides whether actions are allowed at all (``--read-only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from console.policy import STALL_DEFAULT_S, ActionPolicy, ActionRefused

if TYPE_CHECKING:
    from node_core.node import Node

Snapshot = dict[str, Any]
JournalRow = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """What the operator asked for: ``kind`` on peer ``label``, ``service`` for a panic, park
    or stall (park and stall default to ``header_sync``), ``seconds`` for a stall, ``rate``
    in KiB/s for a throttle (``None`` or 0 lifts it).

    The rate stays in KiB/s, the unit the operator typed, so :meth:`describe` echoes it;
    only the client converts it to the node's bytes per second."""

    kind: str
    label: str
    service: str | None = None
    seconds: float | None = None
    rate: float | None = None

    def describe(self) -> str:
        if self.kind == "panic":
            return f"panic the {self.service} routine of {self.label}"
        if self.kind == "park":
            return f"park the {self.service or 'header_sync'} service of {self.label}"
        if self.kind == "stall":
            seconds = STALL_DEFAULT_S if self.seconds is None else self.seconds
            return f"stall {self.service or 'header_sync'} reads of {self.label} for {seconds:g} s"
        if self.kind == "throttle":
            if not self.rate:
                return f"lift the bandwidth throttle of {self.label}"
            return f"throttle reads from {self.label} to {self.rate:g} KiB/s"
        return f"{self.kind} {self.label}"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened: ``effect`` is what the node was seen to do (from its journal)."""

    ok: bool
    message: str
    fault_id: int | None = None
    effect: str | None = None


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
        from node_core.faults import FaultError

        try:
            self.policy.check(request.kind)
        except ActionRefused as exc:
            return ActionResult(False, str(exc))
        try:
            if request.kind == "disconnect":
                outcome = await self.node.faults.disconnect(request.label)
            elif request.kind == "park":
                outcome = await self.node.faults.park(
                    request.label, request.service or "header_sync"
                )
            elif request.kind == "stall":
                outcome = await self.node.faults.stall(
                    request.label,
                    request.service or "header_sync",
                    seconds=request.seconds or STALL_DEFAULT_S,
                )
            elif request.kind == "throttle":
                # The node takes bytes/s, and None (not 0) as "lift": say it the node's way.
                outcome = await self.node.faults.throttle(
                    request.label, request.rate * 1024 if request.rate else None
                )
            else:
                outcome = await self.node.faults.panic(request.label, request.service or "")
        except FaultError as exc:
            return ActionResult(False, str(exc))
        except TimeoutError:
            return ActionResult(False, f"no effect observed within 5 s for: {request.describe()}")
        return ActionResult(
            True,
            f"{request.describe()}: {outcome.effect} ({outcome.reason})",
            outcome.fault_id,
            outcome.effect,
        )
