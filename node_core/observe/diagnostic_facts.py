"""The facts diagnostics read: a narrow view of the node, from a snapshot or from the node.

Why: the evaluator (:mod:`node_core.observe.diagnostics`) runs on the node once a second. It
used to be handed the full snapshot document, and at 1,000 peers building that document took
about 100 ms of the event loop every second (40% of an idle node's samples, the loop-lag p99
of docs/ARCHITECTURE.md "Measuring performance"). The evaluator reads a few numbers per
running sync routine and a handful of node-wide ones, so it takes exactly those as
:class:`NodeFacts`. Two ways to get them, which must agree:

* :func:`facts_from_snapshot`: from a snapshot document (the tests' made-up documents, a
  recording, a remote node's snapshot);
* the node's own services (``routine_facts`` of header and block sync, see
  :mod:`node_core.observe.diagnostics_task`), without building the document.

Sans-I/O: plain data in, plain data out; no clock, no loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node_core.observe.schema import Snapshot

__all__ = [
    "BlockSyncFacts",
    "HeaderSyncFacts",
    "NodeFacts",
    "ParkedFacts",
    "RoutineFacts",
    "block_sync_matters",
    "facts_from_snapshot",
    "header_sync_matters",
]


@dataclass(frozen=True, slots=True)
class BlockSyncFacts:
    """What a block-sync routine's row says for diagnostics (``block_sync`` of a routine)."""

    #: Heights requested and not received.
    outstanding: int
    #: Blocks accepted this session (the progress token).
    accepted_blocks: int
    #: The download window now, in blocks, and the peer's request cap.
    cwnd: int
    hard_cap: int


@dataclass(frozen=True, slots=True)
class HeaderSyncFacts:
    """What a header-sync routine's row says for diagnostics (``header_sync`` of a routine)."""

    #: Commands waiting in the routine's queue, and the queue's capacity.
    queue_depth: int
    queue_max: int
    #: Header requests outstanding, as (start height, count), in the reactor's order.
    outstanding: tuple[tuple[int, int], ...]
    #: Whether a range is in flight to the peer.
    in_flight: bool
    #: Whether the peer's Status arrived, and the tip it advertises.
    received_status: bool
    advertised_tip: int


def block_sync_matters(outstanding: int) -> bool:
    """Whether a running block-sync session can raise a diagnostic: only with heights
    outstanding (a stall, a window at its floor)."""
    return outstanding > 0


def header_sync_matters(
    queue_depth: int, outstanding: bool, received_status: bool, advertised_tip: int, tip: int
) -> bool:
    """Whether a running header-sync session can raise a diagnostic: with commands queued (a
    stall, a full queue: every threshold is at least 1 %), requests outstanding (a stall), or
    a Status above our header tip ``tip`` (the node behind an idle peer)."""
    return queue_depth > 0 or outstanding or (received_status and advertised_tip > tip)


@dataclass(frozen=True, slots=True)
class RoutineFacts:
    """One *running* routine of a peer that can raise a diagnostic (its header- or
    block-sync facts :func:`header_sync_matters` or :func:`block_sync_matters`). The rest
    are left out: at 1,000 idle peers they are nearly all, and reading them costs."""

    label: str
    service: str
    generation: int
    block_sync: BlockSyncFacts | None = None
    header_sync: HeaderSyncFacts | None = None


@dataclass(frozen=True, slots=True)
class ParkedFacts:
    """A parked header-sync peer (the snapshot's ``parked`` entry)."""

    label: str
    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything one evaluation reads. ``routines`` holds only the running routines that
    can raise a diagnostic (see :class:`RoutineFacts`), in the snapshot's order (peers by
    connection id, each peer's routines oldest first)."""

    routines: Sequence[RoutineFacts]
    parked: Sequence[ParkedFacts]
    #: The event-loop lag window: its sample count and p99 (ms).
    lag_samples: int
    lag_p99_ms: float
    #: The header-sync reactor's queues: depth and capacity of each.
    reactor_events: int
    reactor_events_max: int
    reactor_actions: int
    reactor_actions_max: int
    header_tip: int
    #: Block sync: bodies committed ever, and the byte budget's use and size.
    committed_total: int
    budget_reserved: int
    budget_max: int


def _header_sync(hs: Mapping[str, Any]) -> HeaderSyncFacts:
    return HeaderSyncFacts(
        queue_depth=hs["queue_depth"],
        queue_max=hs["queue_max"],
        outstanding=tuple((o["start_height"], o["count"]) for o in hs["outstanding"]),
        in_flight=hs["in_flight"] is not None,
        received_status=bool(hs["received_status"]),
        advertised_tip=hs["advertised_tip"],
    )


def _block_sync(bs: Mapping[str, Any]) -> BlockSyncFacts:
    return BlockSyncFacts(
        outstanding=bs["outstanding"],
        accepted_blocks=bs["accepted_blocks"],
        cwnd=bs["window"]["cwnd"],
        hard_cap=bs["window"]["hard_cap"],
    )


def facts_from_snapshot(snap: Snapshot) -> NodeFacts:
    """The facts a snapshot document shows (its own ``diagnostics`` section is ignored)."""
    tip = snap["chain"]["header_tip"]["height"]
    routines: list[RoutineFacts] = []
    for peer in snap["peers"]:
        label = peer["label"]
        for r in peer["routines"]:
            if r["state"] != "running":
                continue
            raw_bs = r.get("block_sync")
            raw_hs = r.get("header_sync")  # an empty section counts as none
            bs = None if raw_bs is None else _block_sync(raw_bs)
            hs = _header_sync(raw_hs) if raw_hs else None
            if bs is not None and not block_sync_matters(bs.outstanding):
                bs = None
            if hs is not None and not header_sync_matters(
                hs.queue_depth, bool(hs.outstanding), hs.received_status, hs.advertised_tip, tip
            ):
                hs = None
            if bs is not None or hs is not None:
                routines.append(RoutineFacts(label, r["service"], r["generation"], bs, hs))
    lag = snap.get("loop_lag")
    reactor = snap["header_sync"]["reactor"]
    block_sync = snap["block_sync"]
    return NodeFacts(
        routines=routines,
        parked=[ParkedFacts(p["label"], p["reason"], p["since"]) for p in snap.get("parked") or []],
        lag_samples=0 if lag is None else lag["samples"],
        lag_p99_ms=0.0 if lag is None else lag["p99_ms"],
        reactor_events=reactor["events"],
        reactor_events_max=reactor["events_max"],
        reactor_actions=reactor["actions"],
        reactor_actions_max=reactor["actions_max"],
        header_tip=tip,
        committed_total=block_sync["committed_total"],
        budget_reserved=block_sync["budget_reserved"],
        budget_max=block_sync["budget_max"],
    )
