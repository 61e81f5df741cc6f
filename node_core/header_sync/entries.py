"""The plain records of header sync's shared half: its settings and what it keeps per peer.

Why a module of its own: the reactor (:mod:`node_core.header_sync.reactor`) and the parts it
delegates to (range planning and fork search in :mod:`node_core.header_sync.planning`, Headers
responses in :mod:`node_core.header_sync.responses`, the NewBlock relay in
:mod:`node_core.header_sync.relay`, giving up bodiless headers in
:mod:`node_core.header_sync.abandon`, observation in :mod:`node_core.header_sync.observe`) all
read these records, and none of those parts may import the reactor (it imports them). Data
only: every rule about these records lives in the module that acts on them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node_core.chain.genesis import Checkpoints
from node_core.chain.pow import DEMO_BITS
from node_core.header_sync.commands import HeaderSyncCommandSink
from node_core.header_sync.peer_state import HsPeerState, RateMeter
from node_core.header_sync.range_queue import RangeRequest
from node_core.protocol.header_sync import (
    DEFAULT_HEADERS_PER_RESPONSE,
    DEFAULT_INFLIGHT_REQUESTS,
    MAX_HS_MESSAGE_BYTES,
    Status,
)

if TYPE_CHECKING:
    from node_core.transport.supervise import RoutineHandle

__all__ = [
    "SERVICE",
    "ForkSearch",
    "HeaderSyncConfig",
    "Outstanding",
    "ParkRecord",
    "PeerEntry",
]

#: The service's name: routines, journal events, misbehavior records and parked peers carry it.
SERVICE = "header_sync"


@dataclass(frozen=True, slots=True)
class HeaderSyncConfig:
    """Header-sync settings; defaults are the reference's (§3.1) unless noted."""

    request_timeout: float = 30.0
    #: Reactor housekeeping tick (timeouts): ``min(request_timeout, 1 s)`` in the reference.
    tick_interval: float = 1.0
    max_headers_per_response: int = DEFAULT_HEADERS_PER_RESPONSE
    max_inflight_requests: int = DEFAULT_INFLIGHT_REQUESTS
    #: Minimum difficulty of every header (our synthetic chain's proof of work).
    min_bits: int = DEMO_BITS
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    accept_new_blocks: bool = True
    new_block_interval: float = 5.0
    #: First fork-search step below a failed anchor; each failed probe multiplies it by 4.
    fork_search_step: int = 16
    #: Forward ranges planned at once with two or more peers (deviation 33 in
    #: docs/PROTOCOL.md): the one at our tip and the ones after it, each asked of another peer.
    #: Not the reference (one forward range at a time); 1 restores that.
    ranges_ahead: int = 4
    #: Seconds of handling a reactor turn spends before it yields to the loop (no further
    #: event is started past it). One Headers answer checks up to 4,000 headers (5-20 ms);
    #: 64 in one turn, or every held answer at once, held the node's loop for 50-260 ms
    #: during a block sync (docs/ARCHITECTURE.md, "Measuring performance").
    turn_budget: float = 0.004


@dataclass(slots=True)
class Outstanding:
    """A request the reactor times out: the range, its session and its deadline."""

    range: RangeRequest
    forward: bool
    generation: int
    deadline: float


@dataclass(slots=True)
class ForkSearch:
    """Where a peer's chain leaves ours: it agrees at ``low``, differs at or below ``high``."""

    low: int
    high: int
    step: int


@dataclass(slots=True)
class PeerEntry:
    """The reactor's record of one peer's current header-sync session."""

    label: str
    generation: int
    sink: HeaderSyncCommandSink[Status]
    #: The connection's negotiated ``max_message_bytes``: what we send this peer must fit it.
    max_message: int = MAX_HS_MESSAGE_BYTES
    state: HsPeerState | None = None
    handle: RoutineHandle | None = None
    status: Status | None = None
    outstanding: deque[Outstanding] = field(default_factory=deque)
    late_covered: int = 0
    served_inflight: int = 0
    last_sent_status: Status | None = None
    new_block_meter: RateMeter = field(default_factory=lambda: RateMeter(5.0))
    fork: ForkSearch | None = None


@dataclass(frozen=True, slots=True)
class ParkRecord:
    """A parked peer, as the Parked view shows it."""

    label: str
    service: str
    reason: str
    since: float
    work_returned: int
