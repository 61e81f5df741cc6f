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
    assert set(ACTIONS) == {k.value for k in ActionKind}


def test_the_policy_refuses_before_anything_happens() -> None:
    assert ControlPolicy().refuse("disconnect", OPERATOR) is None
    viewer = ControlPolicy().refuse("disconnect", VIEWER)
    assert viewer is not None and viewer.refusal is Refusal.ROLE and "viewer" in viewer.message
    read_only = ControlPolicy(read_only=True).refuse("panic", OPERATOR)
    assert read_only is not None and read_only.refusal is Refusal.READ_ONLY
    unknown = ControlPolicy().refuse("explode", OPERATOR)
    assert unknown is not None and unknown.refusal is Refusal.INVALID


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
