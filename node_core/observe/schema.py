"""The snapshot document as a typed wire format: one TypedDict per section, and its validator.

:func:`node_core.observe.snapshot.build_snapshot` makes a :class:`Snapshot`; the console renders
one, the control API serves one as JSON (``GET /api/v1/snapshot``), and a remote client reads one
back. Since a document now crosses a network between builds of different ages, its shape is a
contract written here, checked by mypy on the node side and by :func:`validate_snapshot` (or
:func:`decode_snapshot` for raw JSON) on the reading side.

**Version and restarts.** ``schema`` is :data:`SCHEMA_VERSION`. ``boot_id`` is a random id made
once per run of a node (one :class:`~node_core.node.Node` object, which starts at most once),
and ``node.started_at`` is that run's wall-clock start. A client that sees another ``boot_id``
than last time knows the node restarted: its journal is a new one, numbered from ``seq`` 1
again (``journal_seq`` here counts up from 0), so the client must forget the last seq it had
and read the journal anew rather than ask for rows after a seq of the old run.

**Compatibility rules.**

* Adding a key is compatible and needs no version bump. Validation ignores keys it does not
  know (msgspec's default for TypedDicts), so an older client reads a newer node's document;
  the validated document it gets back carries only the keys this schema names.
* Removing or renaming a key, or changing its type or meaning, bumps :data:`SCHEMA_VERSION`;
  a reader refuses a document of another version (:class:`SnapshotSchemaError` at
  ``$.schema``) instead of misreading it.
* ``X | None`` means the key is always present and may be null. ``NotRequired`` means the key
  may be absent: the per-routine sub-documents (``discovery``, ``header_sync``,
  ``block_sync`` on a :class:`RoutineRow`), because they exist only while that service's
  routine is registered, and the top-level ``invariants``, ``diagnostics`` and
  ``diagnostic_thresholds``, which nodes built before them (and fixture documents) do not
  carry, and likewise a brief peer's ``bytes_in_per_s`` and ``bytes_out_per_s``.
* Enumerated values (a routine's ``state``, a peer's ``direction``, a close's ``by``, a fill
  stop) are typed ``str``, their values listed in comments: a node that learns a new state
  must not make every older client refuse the whole document.
* Numbers typed ``float`` accept integers (JSON has one number type); numbers typed ``int``
  refuse floats and booleans.

Times: ``*_at`` and ``since``/``time`` are wall-clock Unix seconds; ``*_s`` and ``*_in_s`` are
durations in seconds; ``*_ms`` milliseconds. Hashes and node ids are lowercase hex.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import msgspec

#: Version of the snapshot document. 1: untyped. 2: typed by this module, with ``boot_id``.
SCHEMA_VERSION = 2


# ---------------------------------------------------------------------------------- node


class NodeSection(TypedDict):
    """Who this node is and how long it has run."""

    id: str  # node id (Ed25519 public key), hex
    label: str  # ``peer:`` + short id, the name used everywhere else
    listen: str  # ``host:port`` the transport listens on
    api: str | None  # ``host:port`` of the control API, null when it is off
    network: str  # network label, e.g. ``regtest``
    chain_id: str  # genesis hash, hex; peers on another chain are refused
    started_at: float  # wall time this run started (see ``boot_id``)
    uptime_s: float
    allow_faults: bool  # whether operator fault actions are enabled


class TransportSection(TypedDict):
    """Connection counts against the transport's limits."""

    connections: int
    inbound: int
    outbound: int
    max_connections: int
    pending_handshakes: int
    max_pending_handshakes: int
    max_connections_per_ip: int
    per_ip: dict[str, int]  # connections per remote IP


class BootstrapEntry(TypedDict):
    """One configured bootstrap address and how dialing it has gone."""

    addr: str
    connected: bool
    attempts: int
    failures: int
    last_error: str | None


class DialerSection(TypedDict):
    """The outbound dialer: how many peers it wants and how far it got."""

    target: int
    connected: int
    outbound: int
    inbound: int
    in_flight: int  # dials under way
    reached: bool  # connected >= target
    book_size: int  # address-book entries
    bootstrap: list[BootstrapEntry]


# ---------------------------------------------------------------------------------- chain


class TipRef(TypedDict):
    """A block by height and hash."""

    height: int
    hash: str


class ChainSection(TypedDict):
    """The local chain: best header, best verified block, the sync target."""

    header_tip: TipRef
    verified_tip: TipRef
    target: int
    network: str
    finalized_height: int


# ---------------------------------------------------------------------------------- header sync


class RangeQueueCounts(TypedDict):
    """The shared header range queue."""

    forward: int
    backward: int
    assigned: int
    covered_intervals: int
    covered_to: int  # highest height covered contiguously from 0, -1 when none


class ReactorDepths(TypedDict):
    """The header-sync reactor's queue depths against their capacities."""

    events: int
    events_max: int
    lifecycle: int
    actions: int
    actions_max: int


class CandidateBranch(TypedDict):
    """A competing header chain being fetched from ``peer``."""

    fork_height: int
    tip_height: int
    peer: str


class UnavailableHeader(TypedDict):
    """An abandoned header (no peer served its block), refused until it expires."""

    height: int
    hash: str
    expires_in_s: float


class HeaderSyncSection(TypedDict):
    """The node-wide header-sync state (the reactor); per-peer state is on each routine."""

    range_queue: RangeQueueCounts
    reactor: ReactorDepths
    peers: int
    peers_with_status: int
    parked: int
    anchor: TipRef  # the header index's tip
    candidate: CandidateBranch | None
    pending_commits: int
    seen_cache: int
    reorgs: int
    abandoned: int  # header chains given up because no peer served their blocks
    unavailable: list[UnavailableHeader]
    headers_per_s: float
    committed_total: int


# ---------------------------------------------------------------------------------- block sync


class BlockSyncStall(TypedDict):
    """Why nothing downloads the committer's next height: present only while it waits."""

    height: int
    waiting_s: float
    give_up_in_s: float
    peer_stops: dict[str, int]  # each routine's last fill stop, counted


class BlockSyncSlots(TypedDict):
    """Request slots summed over every block-sync peer."""

    peers: int
    with_status: int
    capacity: int
    effective_window: int
    available: int
    saturated: int
    outstanding_requests: int
    unreceived: int


class BlockSyncSection(TypedDict):
    """The node-wide block-sync state: the byte budget, the reorder buffer, the work queue."""

    download_floor: int
    verified_tip: int
    budget_reserved: int
    budget_max: int
    budget_peak: int
    peak_outstanding_requests: int
    reserved_bytes: int
    held_bytes: int
    reorder_count: int
    reorder_bytes: int
    applying_count: int
    pending: int
    in_flight: int
    received: int
    blocks_per_s: float
    bytes_per_s: float
    committed_total: int
    reset_epoch: int
    stall: BlockSyncStall | None
    peers: BlockSyncSlots


# ---------------------------------------------------------------------------------- routines


class DiscoveryExchange(TypedDict):
    """A discovery routine's exchange with its peer."""

    phase: str  # ``exchange`` | ``serving`` | ...
    outcome: str  # ``running`` | ``complete`` | ...
    received_hello: bool
    received_peers: bool
    received_services: bool
    records_imported: int
    refreshes: int


class HeaderRange(TypedDict):
    """A header range a header-sync routine has in flight."""

    start_height: int
    count: int
    forward: bool
    finalized: bool


class OutstandingHeaders(TypedDict):
    """A header request the reactor will time out."""

    start_height: int
    count: int
    deadline_in_s: float


class ForkSearchBounds(TypedDict):
    """Where the peer's chain leaves ours: agrees at ``low``, differs at or below ``high``."""

    low: int
    high: int


class HeaderSyncRoutineView(TypedDict):
    """One peer's header-sync session: the routine's side and the reactor's side."""

    queue_depth: int  # commands queued for the routine
    queue_max: int
    status_pending: bool
    in_flight: HeaderRange | None
    advertised_tip: int
    received_status: bool
    max_headers: int | None  # from the peer's Status, null before it
    fifo_len: int
    tolerance: int
    stalled_for_s: float | None  # seconds an operator stall still holds it
    pending_write: bool
    served_inflight: int  # the peer's requests we are answering
    outstanding: list[OutstandingHeaders]
    fork_search: ForkSearchBounds | None


class DownloadWindowView(TypedDict):
    """A block-sync routine's congestion window (BBR-like)."""

    cwnd: int
    rtprop_ms: float | None
    srtt_ms: float | None
    delivery_blocks_per_s: float
    delivery_bytes_per_s: float
    reliability: float  # 0..1
    phase: str  # ``startup`` | ``probe_bw`` | ``probe_rtt``
    proven: bool
    requests_without_progress: int
    hard_cap: int
    retry_in_s: float | None


class BlockRequest(TypedDict):
    """A GetBlocks request out to the peer."""

    start_height: int
    count: int
    received: int
    deadline_in_s: float


class ServableRange(TypedDict):
    """The heights the peer's Status says it serves."""

    low: int
    high: int


class BlockSyncRoutineView(TypedDict):
    """One peer's block-sync session."""

    outstanding: int  # heights requested and not yet received
    requests: list[BlockRequest]
    window: DownloadWindowView
    delivery_rate: float  # bytes per second (the window's ``delivery_bytes_per_s``)
    fill_stop: str  # why the routine last stopped asking, e.g. ``cwnd_saturated``
    servable: ServableRange | None  # null before the peer's Status
    accepted_blocks: int
    stalled_for_s: float | None
    liveness_in_s: float | None


class RoutineRow(TypedDict):
    """One routine (one service on one connection) and, while registered, its service's view."""

    service: str  # ``discovery`` | ``header_sync`` | ``block_sync`` | a test service
    state: str  # ``running`` | ``parked`` | ``exited`` | ``panicked``
    generation: int
    started_at: float
    exit_cause: str | None  # ``normal`` | ``cancelled`` | ``protocol_reject`` | ...
    exit_reason: str | None
    exit_error: str | None
    exited_at: float | None
    discovery: NotRequired[DiscoveryExchange]
    header_sync: NotRequired[HeaderSyncRoutineView]
    block_sync: NotRequired[BlockSyncRoutineView]


# ---------------------------------------------------------------------------------- peers


class PeerLimits(TypedDict):
    """Limits negotiated with the peer at handshake."""

    max_frame_bytes: int
    max_message_bytes: int
    max_open_streams: int
    max_inbound_queue_depth: int
    idle_timeout_ms: int


class StreamRow(TypedDict):
    """One open stream of a connection."""

    id: int
    kind: int
    service: str
    inbox: int
    pending_out: int
    send_credit: int
    frames_in: int
    frames_out: int


class PeerRow(TypedDict):
    """One connected peer: the connection, its streams and its routines."""

    label: str
    id: str
    addr: str  # ``host:port`` of the connection
    listen_port: int | None  # where the peer says it listens
    direction: str  # ``inbound`` | ``outbound``
    conn_id: int
    connected_at: float
    age_s: float
    bytes_in: int
    bytes_out: int
    capabilities: int
    limits: PeerLimits
    streams: list[StreamRow]
    routines: list[RoutineRow]  # oldest first; a service may appear more than once
    misbehavior_count: int
    throttle_bytes_per_s: float | None  # an operator throttle, null when none
    close: None  # always null for a connected peer (closed ones are in ``recently_closed``)


class BriefHeaderRange(TypedDict):
    """The header range in flight, as a Peers row draws it."""

    start_height: int
    count: int


class BriefHeaderSyncView(TypedDict):
    """The fields of :class:`HeaderSyncRoutineView` a Peers row draws."""

    queue_depth: int
    queue_max: int
    in_flight: BriefHeaderRange | None
    advertised_tip: int
    stalled_for_s: float | None


class BriefWindow(TypedDict):
    """The fields of :class:`DownloadWindowView` a Peers row draws."""

    cwnd: int
    proven: bool


class BriefBlockSyncView(TypedDict):
    """The fields of :class:`BlockSyncRoutineView` a Peers row draws."""

    outstanding: int
    window: BriefWindow
    delivery_rate: float
    fill_stop: str
    stalled_for_s: float | None


class BriefRoutineRow(TypedDict):
    """A :class:`RoutineRow` cut to what a Peers row draws (no view for discovery)."""

    service: str
    state: str
    generation: int
    header_sync: NotRequired[BriefHeaderSyncView]
    block_sync: NotRequired[BriefBlockSyncView]


class BriefPeerRow(TypedDict):
    """A :class:`PeerRow` cut to what the console's Peers row, actions, filter and summary
    read (``GET /api/v1/snapshot?peers=brief``): no node id, limits, capabilities, listen
    port or streams, and routines cut to :class:`BriefRoutineRow`. Same keys, same meaning,
    plus the byte rates the row draws, computed by the node: bytes per second over the last
    4 s as of the node's newest once-a-second sample of its counters, rounded to 0.1, ``None``
    until two samples hold the connection (:mod:`node_core.observe.peer_rates`; absent from
    nodes built before them, whose readers keep their own history of the byte counts)."""

    label: str
    addr: str
    direction: str
    conn_id: int
    connected_at: float
    age_s: float
    bytes_in: int
    bytes_out: int
    bytes_in_per_s: NotRequired[float | None]
    bytes_out_per_s: NotRequired[float | None]
    routines: list[BriefRoutineRow]
    misbehavior_count: int
    throttle_bytes_per_s: float | None
    close: None


class ParkedPeer(TypedDict):
    """A peer whose header-sync is parked."""

    label: str
    service: str
    reason: str
    since: float
    work_returned: int


class ClosedPeer(TypedDict):
    """A connection that closed recently (the last 32)."""

    label: str
    addr: str
    direction: str
    conn_id: int
    connected_at: float
    closed_at: float
    code: int
    reason: str
    by: str  # ``local`` | ``remote``
    bytes_in: int
    bytes_out: int


# ---------------------------------------------------------------------------------- health


class LoopLagSection(TypedDict):
    """Event-loop lag over the recent window."""

    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class CountersSection(TypedDict):
    """Node-wide counters."""

    panics: float
    trace_rows_dropped: int


class MisbehaviorRow(TypedDict):
    """One misbehavior record (the last 100)."""

    time: float
    label: str
    service: str
    reason: str
    action: str


class MisbehaviorTallyRow(TypedDict):
    """All misbehavior records ever, counted by service and reason."""

    service: str
    reason: str
    count: int


# ---------------------------------------------------------------------------------- invariants


class InvariantsSection(TypedDict):
    """What the node's own consistency checks say now, and the counts that show stranded work.

    Read by the invariant checks of :mod:`zakura.chaos.invariants` from outside the process:
    the shared structures check themselves (``invariant_violations``), but only the node can
    run those checks, so their verdicts travel in the snapshot. Each list is empty when sound;
    at any instant, not only when idle, since those structures only change in synchronous
    sections. The routine counts differ while a closed connection's routines are still
    unwinding, so compare them when the node is idle.
    """

    range_queue: list[str]  # header range queue vs each live session's generation
    work_queue: list[str]  # block-sync heights, owners and the byte ledger
    bytes_charged: int  # bytes ever charged to the block-sync budget
    bytes_released: int  # ... and released; charged - released = bytes reserved or held now
    parked_holding: dict[str, int]  # parked peer -> header ranges still assigned to it
    routines_alive: dict[str, int]  # service -> routines started and not exited
    routines_on_open: dict[str, int]  # service -> live routines on open connections


# ---------------------------------------------------------------------------------- diagnostics


class DiagnosticRow(TypedDict):
    """One active diagnostic (:mod:`node_core.observe.diagnostics`): what is wrong, where,
    since when, and what to look at."""

    id: str  # ``routine_stalled`` | ``peer_parked`` | ``command_queue_full`` | ...
    severity: str  # ``warning`` | ``critical``
    subject: str  # a peer label, ``LABEL SERVICE``, ``node``, ``block_sync`` ...
    since: float  # when the condition began (wall time)
    message: str  # one sentence saying what to look at


# ---------------------------------------------------------------------------------- the document


class SnapshotSections(TypedDict):
    """Every section of a snapshot but its peers (:class:`Snapshot`, :class:`BriefSnapshot`)."""

    schema: int
    #: Random per run of the node (16 hex digits); another value means a restart.
    boot_id: str
    generated_at: float
    node: NodeSection
    transport: TransportSection
    dialer: DialerSection
    chain: ChainSection
    header_sync: HeaderSyncSection
    block_sync: BlockSyncSection
    parked: list[ParkedPeer]
    recently_closed: list[ClosedPeer]
    routines_summary: dict[str, dict[str, int]]  # service -> state -> routines
    loop_lag: LoopLagSection
    counters: CountersSection
    misbehavior: list[MisbehaviorRow]
    misbehavior_tally: list[MisbehaviorTallyRow]
    #: seq of the newest journal row (0: none yet); counts again from 0 under a new ``boot_id``.
    journal_seq: int
    invariants: NotRequired[InvariantsSection]
    #: Active diagnostics, most severe first; absent from nodes built before them.
    diagnostics: NotRequired[list[DiagnosticRow]]
    #: The thresholds they fire at (``--diag`` key -> value), for the view's empty state.
    diagnostic_thresholds: NotRequired[dict[str, float]]


class Snapshot(SnapshotSections):
    """A node right now (schema :data:`SCHEMA_VERSION`); see the module docstring."""

    peers: list[PeerRow]


class BriefSnapshot(SnapshotSections):
    """``GET /api/v1/snapshot?peers=brief``: every section of :class:`Snapshot`, each peer cut
    to :class:`BriefPeerRow` (under a third of the bytes at 1,000 peers: what a console
    polling four times a second decodes), ``brief`` true, and ``detail``: with
    ``&detail=LABEL`` that peer's full :class:`PeerRow` (the peer detail view), null without
    it or when that peer is not connected."""

    peers: list[BriefPeerRow]
    brief: bool
    detail: PeerRow | None


# ---------------------------------------------------------------------------------- validation


class SnapshotSchemaError(ValueError):
    """A document does not match the schema; ``path`` names the first mismatch (``$.a[0].b``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"snapshot schema {SCHEMA_VERSION}: {problem} at {path}")
        self.path = path
        self.problem = problem


class _Version(TypedDict):
    schema: int


def _version_error(version: object) -> SnapshotSchemaError:
    return SnapshotSchemaError(
        "$.schema", f"document has schema {version!r}, this build reads {SCHEMA_VERSION}"
    )


def _from_validation(exc: msgspec.ValidationError) -> SnapshotSchemaError:
    # msgspec ends its message with " - at `$.path`" when the mismatch is below the root.
    problem, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        return SnapshotSchemaError("$", str(exc))
    return SnapshotSchemaError(where.rstrip("`"), problem)


def validate_snapshot(doc: object) -> Snapshot:
    """Check a decoded document (e.g. ``orjson.loads`` of the API's answer) against the schema.

    Strict: no string-to-number or other lax coercions; an int is accepted where a float is
    expected. Unknown keys are ignored (forward compatibility), and the returned document,
    a new one, has only the keys the schema names. Raises :class:`SnapshotSchemaError`
    naming the path of the first mismatch, or ``$.schema`` for a document of another version.
    """
    if not isinstance(doc, dict):
        raise SnapshotSchemaError("$", f"expected an object, got {type(doc).__name__}")
    version = doc.get("schema")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise _version_error(version)
    try:
        return msgspec.convert(doc, Snapshot, strict=True)
    except msgspec.ValidationError as exc:
        raise _from_validation(exc) from None


def decode_snapshot(data: bytes | str) -> Snapshot:
    """Decode and validate a JSON snapshot in one pass (what a remote client reads).

    The same rules and errors as :func:`validate_snapshot`; malformed JSON is reported at
    ``$`` too.
    """
    try:
        version = msgspec.json.decode(data, type=_Version)["schema"]
    except msgspec.ValidationError:
        version = None  # no integer "schema" at the top: reported below as a version error
    except msgspec.DecodeError as exc:
        raise SnapshotSchemaError("$", f"not JSON: {exc}") from None
    if version != SCHEMA_VERSION:
        raise _version_error(version)
    try:
        return msgspec.json.decode(data, type=Snapshot, strict=True)
    except msgspec.ValidationError as exc:
        raise _from_validation(exc) from None
