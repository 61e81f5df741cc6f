"""Routine strand-prevention cases of reference §6.4 for the sans-I/O header-sync peer state."""

from __future__ import annotations

import orjson
import pytest

from node_core.header_sync.events import (
    InboundGetHeadersRequested,
    MisbehaviorReason,
    NewBlockCandidate,
    PeerHeadersReceived,
    PeerMisbehavior,
    PeerStatusUpdated,
    PeerWorkAssigned,
    RoutineEvent,
)
from node_core.header_sync.peer_state import (
    CONTINUE,
    EMPTY_RETRY_INTERVAL,
    HeadersOutcome,
    HsPeerState,
    RateMeter,
    Verdict,
)
from node_core.header_sync.range_queue import RangeRequest, SharedHeaderRangeQueue
from node_core.protocol.header_sync import (
    HEADER_WIRE_BYTES,
    HS_FRAME_CAP,
    TAG_HEADERS,
    TAG_NEW_BLOCK,
    GetHeaders,
    Headers,
    HeaderSyncMessage,
    NewBlock,
    Status,
    encode_header_sync,
)

ANCHOR = b"\x11" * 32
TIP_HASH = b"\x22" * 32
PEER = "peer-a"


class Boom(RuntimeError):
    """A simulated panic inside the reactor hand-off."""


class Log:
    """Records sends and emits in one ordered list; can refuse or raise on demand."""

    def __init__(self) -> None:
        self.entries: list[object] = []
        self.emit_ok = True
        self.send_ok = True
        self.raise_on: type | None = None

    def emit(self, event: RoutineEvent) -> bool:
        if self.raise_on is not None and isinstance(event, self.raise_on):
            raise Boom(type(event).__name__)
        if not self.emit_ok:
            return False
        self.entries.append(event)
        return True

    def send(self, msg: HeaderSyncMessage) -> bool:
        if not self.send_ok:
            return False
        self.entries.append(msg)
        return True

    def of(self, kind: type) -> list[object]:
        return [e for e in self.entries if isinstance(e, kind)]

    def misbehavior(self) -> list[tuple[MisbehaviorReason, bool]]:
        return [(e.reason, e.disconnect) for e in self.entries if isinstance(e, PeerMisbehavior)]


def rr(start: int, count: int) -> RangeRequest:
    return RangeRequest(start, count, ANCHOR, False)


def make(
    queue: SharedHeaderRangeQueue | None = None, *, generation: int = 1, peer: str = PEER
) -> tuple[HsPeerState, Log, SharedHeaderRangeQueue]:
    q = queue if queue is not None else SharedHeaderRangeQueue(on_wake=lambda: None)
    log = Log()
    state = HsPeerState(peer, generation, q, log.emit, log.send, HS_FRAME_CAP, 0)
    return state, log, q


def frame(msg: HeaderSyncMessage) -> tuple[int, int, bytes]:
    payload = encode_header_sync(msg)
    return payload[0], 0, payload


def status(tip: int = 1000, *, anchor: int = 0, max_headers: int = 1000) -> Status:
    return Status(tip, TIP_HASH, anchor, max_headers, 10)


def headers(n: int, start: int = 1) -> Headers:
    """``n`` opaque headers that carry heights ``start..`` where real headers do (bytes 4..8)."""
    return Headers(
        tuple(
            b"\x01\x00\x00\x00"
            + (start + i).to_bytes(4, "little")
            + bytes([i % 256]) * (HEADER_WIRE_BYTES - 8)
            for i in range(n)
        ),
        (0,) * n,
    )


def feed(state: HsPeerState, msg: HeaderSyncMessage, now: float) -> Verdict:
    return state.on_frame(*frame(msg), now)


def ready(
    queue: SharedHeaderRangeQueue | None = None, *, generation: int = 1, peer: str = PEER
) -> tuple[HsPeerState, Log, SharedHeaderRangeQueue]:
    """A session that received a valid Status (so it may pull) with a clean log."""
    state, log, q = make(queue, generation=generation, peer=peer)
    assert feed(state, status(), 0.0) is CONTINUE
    log.entries.clear()
    return state, log, q


# --- RateMeter -------------------------------------------------------------------------------


def test_rate_meter_fresh_is_available_then_closes_for_interval() -> None:
    m = RateMeter(5.0)
    assert m.try_take(100.0)
    assert not m.try_take(104.9)
    assert m.try_take(105.0)
    assert not m.try_take(105.0)


# --- pull ordering (§3.4) --------------------------------------------------------------------


def test_pull_sends_records_and_emits_within_one_call() -> None:
    q = SharedHeaderRangeQueue(on_wake=lambda: None)
    log = Log()
    seen_at_emit: list[tuple[int, bool]] = []

    def emit(event: RoutineEvent) -> bool:
        if isinstance(event, PeerWorkAssigned):
            seen_at_emit.append((len(state.expected), state.in_flight is not None))
        return log.emit(event)

    state = HsPeerState(PEER, 1, q, emit, log.send, HS_FRAME_CAP, 0)
    feed(state, status(), 0.0)
    log.entries.clear()
    q.ensure_forward(rr(1, 50))
    assert state.try_pull(1.0)
    assert log.entries == [
        GetHeaders(1, 50),
        PeerWorkAssigned(PEER, 1, 1, 50, ANCHOR, False, True),
    ]
    assert seen_at_emit == [(1, True)]  # expectation existed before the reactor heard of it
    assert [(e.start_height, e.count) for e in state.expected] == [(1, 50)]
    assert q.assigned == {(1, 0): {PEER: 1}}
    assert not state.try_pull(1.0)  # single slot


def test_no_pull_before_status_or_while_torn_down() -> None:
    state, log, q = make()
    q.ensure_forward(rr(1, 10))
    assert not state.try_pull(0.0)
    assert log.entries == []
    state.teardown()
    feed(state, status(), 0.0)
    assert not state.try_pull(0.0)


def test_pull_clamps_to_peer_cap() -> None:
    state, log, q = make()
    feed(state, status(max_headers=20), 0.0)
    q.ensure_forward(rr(1, 100))
    assert state.try_pull(0.0)
    assert log.of(GetHeaders) == [GetHeaders(1, 20)]


def test_send_failure_returns_work_and_leaves_slot_free() -> None:
    state, log, q = ready()
    log.send_ok = False
    q.ensure_forward(rr(1, 10))
    assert not state.try_pull(0.0)
    assert state.in_flight is None and not state.expected
    assert log.of(PeerWorkAssigned) == []
    assert q.assigned == {}
    assert q.forward[0] == rr(1, 10)
    log.send_ok = True
    assert state.try_pull(0.0)


# --- teardown (§3.7) -------------------------------------------------------------------------


def test_teardown_with_in_flight_clears_assignment_and_requeues() -> None:
    state, _log, q = ready()
    q.ensure_forward(rr(1, 10))
    assert state.try_pull(0.0)
    assert state.teardown() == rr(1, 10)
    assert q.assigned == {}
    assert q.forward == (rr(1, 10), rr(1, 10))  # retry copy at the front (no dedup)
    assert state.teardown() is None  # idempotent
    assert q.invariant_violations({}) == []


def test_stale_generation_teardown_keeps_reconnected_assignment() -> None:
    q = SharedHeaderRangeQueue(on_wake=lambda: None)
    old, _, _ = ready(q, generation=1)
    q.ensure_forward(rr(1, 10))
    assert old.try_pull(0.0)
    q.forget_peer(PEER)  # the old session's end, as the owner reports it
    new, _, _ = ready(q, generation=2)
    assert new.try_pull(0.0)
    assert q.assigned == {(1, 0): {PEER: 2}}
    old.teardown()
    assert q.assigned == {(1, 0): {PEER: 2}}
    assert new.in_flight is not None
    assert q.invariant_violations({PEER: 2}) == []


# --- DropExpectation (§3.6) ------------------------------------------------------------------


def test_drop_expectation_pops_frees_slot_and_credits_tolerance() -> None:
    state, _log, q = ready(generation=7)
    q.ensure_forward(rr(1, 10))
    assert state.try_pull(0.0)
    assert not state.on_drop_expectation(6, 1, 10, 1.0)  # another generation: ignored
    assert len(state.expected) == 1 and state.in_flight is not None
    assert state.late_covered_tolerance == 0
    assert state.on_drop_expectation(7, 1, 10, 1.0)
    assert not state.expected and state.in_flight is None
    assert state.late_covered_tolerance == 1
    assert state.on_drop_expectation(7, 1, 10, 1.0)  # idempotent: nothing left to pop
    assert state.late_covered_tolerance == 1


def test_drop_expectation_then_pulls_next_range() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 10))
    q.ensure_forward(rr(11, 10))
    assert state.try_pull(0.0)
    state.on_drop_expectation(1, 1, 10, 1.0)
    assert state.in_flight is not None and state.in_flight.range == rr(11, 10)
    assert log.of(GetHeaders) == [GetHeaders(1, 10), GetHeaders(11, 10)]


def test_late_headers_after_drop_is_absorbed_by_credit() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 3))
    assert state.try_pull(0.0)
    state.on_drop_expectation(1, 1, 3, 1.0)
    log.entries.clear()
    assert feed(state, headers(3), 2.0) is CONTINUE
    assert log.entries == []  # no misbehavior, nothing forwarded
    assert state.late_covered_tolerance == 0
    verdict = feed(state, headers(3), 3.0)  # no credit left: unsolicited
    assert verdict == Verdict.protocol_reject(MisbehaviorReason.UNSOLICITED_HEADERS)


# --- correlation and decode failures (§3.5, §3.14) -------------------------------------------


def test_unsolicited_headers_rejects_and_scores() -> None:
    state, log, _q = ready()
    verdict = feed(state, headers(1), 1.0)
    assert verdict.rejected
    assert verdict.reason is MisbehaviorReason.UNSOLICITED_HEADERS
    assert log.misbehavior() == [(MisbehaviorReason.UNSOLICITED_HEADERS, True)]


def test_correlated_but_malformed_is_malformed_not_unsolicited() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    assert state.try_pull(0.0)
    verdict = feed(state, headers(3), 1.0)  # more than requested
    assert verdict == Verdict.protocol_reject(MisbehaviorReason.MALFORMED_MESSAGE)
    assert log.misbehavior() == [(MisbehaviorReason.MALFORMED_MESSAGE, True)]
    state.teardown()
    assert q.assigned == {} and q.invariant_violations({}) == []


def test_truncated_headers_payload_is_malformed() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    assert state.try_pull(0.0)
    _, _, payload = frame(headers(2))
    verdict = state.on_frame(TAG_HEADERS, 0, payload[:-3], 1.0)
    assert verdict.reason is MisbehaviorReason.MALFORMED_MESSAGE
    assert log.misbehavior() == [(MisbehaviorReason.MALFORMED_MESSAGE, True)]


# --- reactor saturation ----------------------------------------------------------------------


def test_saturated_reactor_restores_expectation_and_keeps_working() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    q.ensure_forward(rr(3, 2))
    assert state.try_pull(0.0)
    log.emit_ok = False
    assert feed(state, headers(2), 1.0) is CONTINUE
    assert [(e.start_height, e.count) for e in state.expected] == [(1, 2)]
    assert state.in_flight is not None and state.in_flight.range == rr(1, 2)
    log.emit_ok = True
    assert log.misbehavior() == []
    # The reactor's timeout later drops the restored expectation and the routine moves on.
    state.on_drop_expectation(1, 1, 2, 31.0)
    assert state.in_flight is not None and state.in_flight.range == rr(3, 2)
    assert feed(state, headers(2, start=3), 32.0) is CONTINUE
    assert log.of(PeerHeadersReceived) != []
    assert log.misbehavior() == []


# --- inbound GetHeaders / Status / NewBlock --------------------------------------------------


def test_get_headers_before_status_is_record_only() -> None:
    state, log, _q = make()
    assert feed(state, GetHeaders(5, 10), 0.0) is CONTINUE
    assert log.misbehavior() == [(MisbehaviorReason.GET_HEADERS_SPAM, False)]
    assert feed(state, status(), 0.0) is CONTINUE
    assert len(log.of(PeerStatusUpdated)) == 1
    assert feed(state, GetHeaders(5, 10), 0.0) is CONTINUE
    assert log.of(InboundGetHeadersRequested) == [InboundGetHeadersRequested(PEER, 5, 10)]


def test_get_headers_over_serving_limit_is_record_only() -> None:
    state, log, _q = ready()
    assert feed(state, GetHeaders(5, state.serving_limit + 1), 0.0) is CONTINUE
    assert log.misbehavior() == [(MisbehaviorReason.GET_HEADERS_TOO_LONG, False)]
    assert log.of(InboundGetHeadersRequested) == []


def test_new_block_flood_second_within_window_dropped_before_decode() -> None:
    state, log, _q = ready()
    block = NewBlock(b"\x33" * HEADER_WIRE_BYTES, b"body")
    assert feed(state, block, 10.0) is CONTINUE
    assert log.of(NewBlockCandidate) == [NewBlockCandidate(PEER, block.header, block.body)]
    # Undecodable garbage inside the window: dropped before decode, so not even malformed.
    assert state.on_frame(TAG_NEW_BLOCK, 0, b"\x04garbage", 12.0) is CONTINUE
    assert feed(state, block, 14.9) is CONTINUE
    assert len(log.of(NewBlockCandidate)) == 1 and log.misbehavior() == []
    assert feed(state, block, 15.0) is CONTINUE
    assert len(log.of(NewBlockCandidate)) == 2


def test_status_spam_is_record_only_and_tip_advance_bypasses_meter() -> None:
    state, log, _q = make()
    assert feed(state, status(100), 0.0) is CONTINUE  # advances: meter untouched
    assert feed(state, status(100), 1.0) is CONTINUE  # same tip: takes the meter token
    assert log.misbehavior() == []
    assert feed(state, status(100), 2.0) is CONTINUE  # same tip, meter closed: spam
    assert log.misbehavior() == [(MisbehaviorReason.STATUS_SPAM, False)]
    assert feed(state, status(101), 3.0) is CONTINUE  # advances: applied despite the meter
    assert state.advertised_tip == 101
    assert feed(state, status(101), 6.0) is CONTINUE  # meter open again
    assert len(log.of(PeerStatusUpdated)) == 4
    assert feed(state, status(50, anchor=60), 20.0) is CONTINUE
    assert log.misbehavior()[-1] == (MisbehaviorReason.INVALID_STATUS, False)
    assert state.advertised_tip == 101


def test_status_does_not_pull() -> None:
    state, log, q = make()
    q.ensure_forward(rr(1, 10))
    feed(state, status(), 0.0)
    assert log.of(GetHeaders) == []
    assert state.on_wake(0.0)


# --- outcomes --------------------------------------------------------------------------------


def test_filled_response_frees_slot_and_pulls_next() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    q.ensure_forward(rr(3, 2))
    assert state.try_pull(0.0)
    assert feed(state, headers(2), 1.0) is CONTINUE
    assert state.last_outcome is HeadersOutcome.FILLED
    assert log.of(GetHeaders) == [GetHeaders(1, 2), GetHeaders(3, 2)]
    assert state.in_flight is not None and state.in_flight.range == rr(3, 2)


def test_empty_response_returns_work_and_holds_slot_one_second() -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    assert state.try_pull(0.0)
    assert feed(state, headers(0), 10.0) is CONTINUE
    assert state.last_outcome is HeadersOutcome.EMPTY
    assert state.in_flight is None
    assert state.empty_retry_until == 10.0 + EMPTY_RETRY_INTERVAL
    assert q.assigned == {} and q.forward[0] == rr(1, 2)
    assert not state.on_wake(10.5)
    assert log.of(GetHeaders) == [GetHeaders(1, 2)]
    assert state.on_empty_retry_due(11.0)
    assert state.empty_retry_until is None
    assert log.of(GetHeaders) == [GetHeaders(1, 2), GetHeaders(1, 2)]


# --- panics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("panic_on", [PeerHeadersReceived, PeerWorkAssigned])
def test_panic_mid_pipeline_leaves_queue_consistent(panic_on: type) -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    q.ensure_forward(rr(3, 2))
    if panic_on is PeerWorkAssigned:
        log.raise_on = panic_on
        with pytest.raises(Boom):
            state.try_pull(0.0)
    else:
        assert state.try_pull(0.0)
        log.raise_on = panic_on
        with pytest.raises(Boom):
            feed(state, headers(2), 1.0)
    assert q.invariant_violations({PEER: 1}) == []
    assert state.teardown() == rr(1, 2)
    q.forget_peer(PEER)
    assert q.invariant_violations({}) == []
    other, _, _ = ready(q, peer="peer-b")
    assert other.try_pull(2.0)
    assert other.in_flight is not None and other.in_flight.range == rr(1, 2)


# --- view ------------------------------------------------------------------------------------


def test_view_is_json_ready() -> None:
    state, _log, q = ready()
    q.ensure_forward(rr(1, 2))
    state.try_pull(0.0)
    view = orjson.loads(orjson.dumps(state.view()))
    assert view["in_flight"]["start_height"] == 1
    assert view["fifo_len"] == 1
    assert view["advertised_tip"] == 1000
    assert view["received_status"]["tip_hash"] == TIP_HASH.hex()
    assert view["tolerance"] == 0 and view["empty_retry_until"] is None


def test_drop_expectation_clears_in_flight_when_only_the_slot_matches() -> None:
    state, _log, q = ready()
    q.ensure_forward(rr(1, 10))
    assert state.try_pull(0.0)
    state.expected.clear()  # e.g. the response was consumed but the slot is still held
    assert state.on_drop_expectation(1, 1, 10, 1.0)
    assert state.in_flight is None
    assert state.late_covered_tolerance == 0  # nothing popped, so no late answer to absorb


def test_headers_hidden_behind_status_type_is_malformed_and_keeps_expectation() -> None:
    state, _log, q = ready()
    q.ensure_forward(rr(1, 2))
    assert state.try_pull(0.0)
    _, _, payload = frame(headers(2))
    verdict = state.on_frame(1, 0, payload, 1.0)  # Status frame type, Headers payload tag
    assert verdict.reason is MisbehaviorReason.MALFORMED_MESSAGE
    assert len(state.expected) == 1  # correlation only ever follows the frame type


@pytest.mark.parametrize(("message_type", "flags"), [(9, 0), (TAG_HEADERS, 1)])
def test_bad_envelope_is_malformed_reject(message_type: int, flags: int) -> None:
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    assert state.try_pull(0.0)
    _, _, payload = frame(headers(2))
    verdict = state.on_frame(message_type, flags, payload, 1.0)
    assert verdict == Verdict.protocol_reject(MisbehaviorReason.MALFORMED_MESSAGE)
    assert log.misbehavior() == [(MisbehaviorReason.MALFORMED_MESSAGE, True)]


def test_saturated_reactor_drops_misbehavior_but_still_rejects() -> None:
    state, log, _q = ready()
    log.emit_ok = False
    assert feed(state, headers(1), 1.0).rejected
    assert log.entries == []


def test_a_late_answer_after_the_next_request_is_absorbed_not_mis_correlated() -> None:
    """Fan-out race: the reactor dropped range 1 (another peer answered first), the routine
    pulled range 3, and only then range 1's answer arrives: it is absorbed with the credit,
    and range 3's own answer still correlates with range 3."""
    state, log, q = ready()
    q.ensure_forward(rr(1, 2))
    q.ensure_forward(rr(3, 2))
    assert state.try_pull(0.0)
    assert state.on_drop_expectation(1, 1, 2, 1.0)
    assert state.in_flight is not None and state.in_flight.range == rr(3, 2)
    assert state.late_covered_tolerance == 1
    assert feed(state, headers(2, start=1), 2.0) is CONTINUE
    assert state.late_covered_tolerance == 0
    assert [(e.start_height, e.count) for e in state.expected] == [(3, 2)]
    assert log.of(PeerHeadersReceived) == []
    assert feed(state, headers(2, start=3), 3.0) is CONTINUE
    assert len(log.of(PeerHeadersReceived)) == 1
    assert log.misbehavior() == []
