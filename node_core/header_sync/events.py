"""Events a per-peer header-sync routine emits to the reactor (reference §3.10, §3.14).

Invariants:

- Every event names the peer by its label (:data:`PeerId`); the events that concern one
  *session* (work assignment, disconnect) also carry that session's generation, so the
  reactor can ignore a stale session's report after a reconnect (§3.9).
- Events are frozen and slotted: once emitted they are shared, never mutated.
- :class:`MisbehaviorReason` values are the reference's wire-stable labels (§3.14), so
  metrics and traces stay comparable with the reference implementation.
- ``PeerMisbehavior.disconnect`` records whether the routine also closed the connection
  (protocol reject) or only recorded the violation; the reactor never has to re-derive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from node_core.header_sync.range_queue import PeerId
from node_core.protocol.header_sync import Status


class MisbehaviorReason(StrEnum):
    """Why a peer was scored; labels as in reference ``header_sync/validation.rs``."""

    INVALID_STATUS = "invalid_status"
    UNSOLICITED_HEADERS = "unsolicited_headers"
    EMPTY_HEADERS = "empty_headers"
    RESPONSE_TOO_LONG = "response_too_long"
    INVALID_RANGE = "invalid_range"
    MALFORMED_MESSAGE = "malformed_message"
    STATUS_SPAM = "status_spam"
    NEW_BLOCK_SPAM = "new_block_spam"
    GET_HEADERS_SPAM = "get_headers_spam"
    GET_HEADERS_TOO_LONG = "get_headers_too_long"
    UNKNOWN_PEER = "unknown_peer"
    INVALID_NEW_BLOCK = "invalid_new_block"


@dataclass(frozen=True, slots=True)
class PeerStatusUpdated:
    """The peer's Status was applied; ``status`` carries the clamped caps."""

    peer: PeerId
    status: Status


@dataclass(frozen=True, slots=True)
class PeerWorkAssigned:
    """The routine sent GetHeaders for this range; the reactor starts its timeout clock.

    Emitted only after the expectation is recorded, so a DropExpectation the reactor sends
    on timeout always finds something to pop (§3.4).
    """

    peer: PeerId
    generation: int
    start_height: int
    count: int
    anchor_hash: bytes
    finalized: bool
    forward: bool
    #: The range's priority and affinity (see ``RangeRequest``), so the reactor can re-queue
    #: exactly the range the routine took.
    priority: int = 0
    affine_peer: PeerId | None = None


@dataclass(frozen=True, slots=True)
class PeerHeadersReceived:
    """A solicited Headers response, decoded against its expectation, for validation."""

    peer: PeerId
    headers: tuple[bytes, ...]
    body_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class InboundGetHeadersRequested:
    """The peer asks us to serve headers; already gated on Status and the serving limit."""

    peer: PeerId
    start_height: int
    count: int


@dataclass(frozen=True, slots=True)
class NewBlockCandidate:
    """A NewBlock that passed the pre-decode meter; the reactor validates it."""

    peer: PeerId
    block_header: bytes
    block_body: bytes


@dataclass(frozen=True, slots=True)
class PeerMisbehavior:
    """A violation; ``disconnect`` is True only when the routine rejected the stream."""

    peer: PeerId
    reason: MisbehaviorReason
    disconnect: bool


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """The session ``generation`` ended; sent on the unbounded lifecycle channel (§3.7)."""

    peer: PeerId
    generation: int


RoutineEvent: TypeAlias = (
    PeerStatusUpdated
    | PeerWorkAssigned
    | PeerHeadersReceived
    | InboundGetHeadersRequested
    | NewBlockCandidate
    | PeerMisbehavior
    | PeerDisconnected
)
"""Everything a routine hands the reactor."""
