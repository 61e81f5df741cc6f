"""PeerRegistry: generation-gated routine writes, core-owned membership, shared queries."""

from __future__ import annotations

from node_core.block_sync.registry import PeerRegistry, Slots
from node_core.protocol.block_sync import Status

H = b"\x01" * 32


def status(low: int, high: int) -> Status:
    return Status(low, high, H)


def test_writes_from_another_generation_are_ignored() -> None:
    reg = PeerRegistry()
    reg.admit("a", 1, "outbound")
    reg.admit("a", 2, "outbound")  # reconnected: generation 2 is current
    assert not reg.upsert_status("a", 1, status(1, 10))
    assert not reg.set_outstanding("a", 1, {5: H})
    assert not reg.publish_slots("a", 1, Slots(10, 4, 2, 1))
    assert not reg.clear_outstanding("a", 1)
    facts = reg.get("a")
    assert facts is not None and facts.status is None and facts.outstanding == {}
    assert reg.upsert_status("a", 2, status(1, 10))
    assert reg.set_outstanding("a", 2, {5: H, 6: H})
    assert reg.total_unreceived() == 2 and reg.has_outstanding_height(6)
    assert not reg.has_outstanding_height(7)


def test_membership_is_the_cores_and_readmission_keeps_peer_facts_only() -> None:
    reg = PeerRegistry()
    reg.admit("a", 1, "inbound")
    reg.upsert_status("a", 1, status(1, 50))
    reg.set_outstanding("a", 1, {3: H})
    reg.publish_slots("a", 1, Slots(32, 8, 4, 2))
    # A routine exit clears only what it published; the entry stays.
    assert reg.clear_outstanding("a", 1)
    facts = reg.get("a")
    assert facts is not None and facts.outstanding == {} and facts.slots == Slots()
    # Re-admission keeps the servable range, never outstanding heights or slots.
    reg.set_outstanding("a", 1, {4: H})
    again = reg.admit("a", 2, "inbound")
    assert again.status == status(1, 50) and again.outstanding == {} and again.slots == Slots()
    assert not reg.remove("a", 1)  # a stale session cannot remove the current one
    assert reg.remove("a", 2) and reg.get("a") is None


def test_floor_bypass_query_and_summary() -> None:
    reg = PeerRegistry()
    reg.admit("a", 1, "outbound")
    reg.admit("b", 2, "outbound")
    reg.upsert_status("a", 1, status(1, 100))
    reg.upsert_status("b", 2, status(1, 50))
    reg.publish_slots("a", 1, Slots(32, 8, 0, 8))
    reg.publish_slots("b", 2, Slots(32, 8, 3, 5))
    # b has room and serves 40: a must not bypass its window for the floor at 40.
    assert reg.floor_has_unsaturated_other_server("a", 40)
    # Nobody else serves 80: a may bypass.
    assert not reg.floor_has_unsaturated_other_server("a", 80)
    summary = reg.slot_summary()
    assert summary["peers"] == 2 and summary["with_status"] == 2
    assert summary["available"] == 3 and summary["saturated"] == 1
    assert summary["outstanding_requests"] == 13
