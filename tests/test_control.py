"""The control model (node_core/control.py): validation, policy and apply() on real nodes."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from node_core.control import (
    ACTIONS,
    Action,
    ActionInvalid,
    ActionKind,
    ControlPolicy,
    Principal,
    Refusal,
    Role,
    apply,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "node"))
from nodekit import Cluster, wait_until

VIEWER = Principal("dashboards", Role.VIEWER, "127.0.0.1:5555")
OPERATOR = Principal("ci", Role.OPERATOR, "127.0.0.1:6666")


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("explode", {}, "kind"),
        ("stall", {"seconds": 0.5}, "seconds"),
        ("stall", {"seconds": 601}, "seconds"),
        ("stall", {"seconds": "30"}, "seconds"),
        ("stall", {"seconds": True}, "seconds"),
        ("stall", {"seconds": math.nan}, "seconds"),
        ("stall", {"service": "discovery"}, "service"),
        ("stall", {"service": 5}, "service"),
        ("throttle", {"rate": -1}, "rate"),
        ("throttle", {"rate": 1e12}, "rate"),
        ("throttle", {"seconds": 3}, "seconds"),
        ("panic", {}, "service"),
        ("panic", {"service": "mempool"}, "service"),
        ("park", {"service": "block_sync"}, "service"),
        ("unpark", {"service": "block_sync"}, "service"),
        ("unpark", {"seconds": 3}, "seconds"),
        ("unpark", {"rate": 64}, "rate"),
        ("disconnect", {"service": "header_sync"}, "service"),
        ("disconnect", {"colour": "red"}, "colour"),
    ],
)
def test_a_bad_field_is_named(kind: str, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ActionInvalid) as err:
        Action.from_fields(kind, "peer:0123456789abcdef", fields)
    assert err.value.field == field


def test_a_label_must_look_like_one() -> None:
    for label in ("", "x" * 65):
        with pytest.raises(ActionInvalid) as err:
            Action("disconnect", label)
        assert err.value.field == "label"


def test_good_actions_and_their_sentences() -> None:
    assert Action.from_fields("stall", "peer:a", {}).describe() == (
        "stall header_sync reads of peer:a for 30 s"
    )
    assert (
        Action("throttle", "peer:a", rate=0).describe() == "lift the bandwidth throttle of peer:a"
    )
    assert Action("panic", "peer:a", "block_sync").kind is ActionKind.PANIC
    unpark = Action.from_fields("unpark", "peer:a", {})
    assert unpark.kind is ActionKind.UNPARK and unpark.effective_service == "header_sync"
    assert unpark.describe() == "unpark the header_sync service of peer:a"
    assert Action("unpark", "peer:a", "header_sync").describe() == unpark.describe()
    assert set(ACTIONS) == {k.value for k in ActionKind}


def test_the_policy_refuses_before_anything_happens() -> None:
    assert ControlPolicy().refuse("disconnect", OPERATOR) is None
    viewer = ControlPolicy().refuse("disconnect", VIEWER)
    assert viewer is not None and viewer.refusal is Refusal.ROLE and "viewer" in viewer.message
    read_only = ControlPolicy(read_only=True).refuse("panic", OPERATOR)
    assert read_only is not None and read_only.refusal is Refusal.READ_ONLY
    unknown = ControlPolicy().refuse("explode", OPERATOR)
    assert unknown is not None and unknown.refusal is Refusal.INVALID
    # Unpark is a fault like the others: operators only, and never on a read-only console.
    assert ControlPolicy().refuse("unpark", OPERATOR) is None
    viewer_unpark = ControlPolicy().refuse("unpark", VIEWER)
    assert viewer_unpark is not None and viewer_unpark.refusal is Refusal.ROLE
    read_only_unpark = ControlPolicy(read_only=True).refuse("unpark", OPERATOR)
    assert read_only_unpark is not None and read_only_unpark.refusal is Refusal.READ_ONLY


async def test_apply_on_real_nodes(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        node = await cluster.start("node", allow_faults=True)
        closed = await cluster.start("closed")  # no --allow-faults
        peer = await cluster.start("peer", bootstrap=(("127.0.0.1", node.transport.listen_port),))
        await wait_until(
            lambda: node.transport.connection_for_label(peer.label) is not None, 10, "peer"
        )

        unknown = await apply(node, Action("disconnect", "peer:nobody"), principal=OPERATOR)
        assert unknown.refusal is Refusal.UNKNOWN_PEER and not unknown.ok
        disabled = await apply(closed, Action("disconnect", peer.label), principal=OPERATOR)
        assert disabled.refusal is Refusal.FAULTS_DISABLED
        refused = await apply(node, Action("disconnect", peer.label), principal=VIEWER)
        assert refused.refusal is Refusal.ROLE
        assert node.transport.connection_for_label(peer.label) is not None  # unchanged

        since = node.journal.last_seq
        done = await apply(node, Action("disconnect", peer.label), principal=OPERATOR)
        assert done.ok and done.effect == "connection_closed" and done.fault_id is not None
        injected = [
            e
            for e in node.journal.since(since, 100)
            if e.table == "fault" and e.event == "injected"
        ]
        assert len(injected) == 1
        assert injected[0].fields["by"] == "ci"
        assert injected[0].fields["role"] == "operator"
        assert injected[0].fields["remote"] == "127.0.0.1:6666"
    finally:
        await cluster.stop()


async def test_unpark_refusals_on_real_nodes(tmp_path: Path) -> None:
    """Each refusal of an unpark says why, changes nothing and journals nothing."""
    cluster = Cluster(tmp_path)
    try:
        node = await cluster.start("node", allow_faults=True)
        closed = await cluster.start("closed")  # no --allow-faults
        peer = await cluster.start("peer", bootstrap=(("127.0.0.1", node.transport.listen_port),))
        await wait_until(lambda: peer.label in node.header_sync.peers, 10, "header sync runs")
        since = node.journal.last_seq
        unpark = Action("unpark", peer.label)

        not_parked = await apply(node, unpark, principal=OPERATOR)
        assert not not_parked.ok and not_parked.refusal is Refusal.NOT_PARKED
        assert not_parked.message == f"peer {peer.label}: header_sync is not parked (it is running)"
        unknown = await apply(node, Action("unpark", "peer:nobody"), principal=OPERATOR)
        assert unknown.refusal is Refusal.UNKNOWN_PEER and unknown.field == "label"
        viewer = await apply(node, unpark, principal=VIEWER)
        assert viewer.refusal is Refusal.ROLE
        read_only = await apply(
            node, unpark, principal=OPERATOR, policy=ControlPolicy(read_only=True)
        )
        assert read_only.refusal is Refusal.READ_ONLY
        # Refused before the peer is even looked up, as every fault is.
        disabled = await apply(closed, Action("unpark", node.label), principal=OPERATOR)
        assert disabled.refusal is Refusal.FAULTS_DISABLED
        assert not [e for e in node.journal.since(since, 100) if e.table == "fault"]
        assert peer.label in node.header_sync.peers and not node.header_sync.parked
    finally:
        await cluster.stop()
