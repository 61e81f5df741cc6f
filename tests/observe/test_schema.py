"""The snapshot is a wire format: the console's fixture, a live node and the API all match it.

``node_core/observe/schema.py`` types the document; these tests hold every producer to it
(and hold the schema to every producer: a key a node sends that the schema does not name fails
too), check that a mismatch is reported at its path, and that ``boot_id`` tells a restart.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from console.fixture import fixture_snapshot
from node_core.node import Node, NodeConfig
from node_core.observe.schema import (
    SCHEMA_VERSION,
    SnapshotSchemaError,
    decode_snapshot,
    validate_snapshot,
)
from node_core.observe.snapshot import (
    misbehavior_rows,
    misbehavior_tally,
    parked_rows,
    peer_row,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until

pytestmark = pytest.mark.timeout(60)


def key_paths(doc: Any, path: str = "$") -> set[str]:
    """Every key path in a JSON-like document, list items merged (``$.peers[].label``)."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(f"{path}.{k}")
            # Dicts keyed by data (service names, IPs, fill stops) are maps, not records.
            if not path.endswith(("per_ip", "routines_summary", "peer_stops")):
                out |= key_paths(v, f"{path}.{k}")
    elif isinstance(doc, list | tuple):
        for item in doc:
            out |= key_paths(item, f"{path}[]")
    return out


def assert_matches(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` validates, as a Python object and as the JSON the API sends, and names no key
    the schema does not (validation drops unknown keys, so a drift shows as a difference)."""
    checked = validate_snapshot(doc)
    from_json = decode_snapshot(orjson.dumps(doc))
    wire = orjson.loads(orjson.dumps(doc))
    missing = key_paths(wire) - key_paths(orjson.loads(orjson.dumps(checked)))
    assert not missing, f"keys the schema does not name: {sorted(missing)}"
    assert orjson.loads(orjson.dumps(checked)) == wire
    assert orjson.loads(orjson.dumps(from_json)) == wire
    return dict(checked)


# ------------------------------------------------------------------ the console's fixture


@pytest.mark.parametrize("peers", [0, 1, 6, 13])
def test_fixture_snapshot_matches_the_schema(peers: int) -> None:
    snap = fixture_snapshot(peers)
    assert snap["schema"] == SCHEMA_VERSION
    assert re.fullmatch(r"[0-9a-f]{16}", snap["boot_id"])
    assert_matches(snap)


# ------------------------------------------------------------------ errors name the path


def test_a_wrong_type_deep_in_the_document_is_reported_at_its_path() -> None:
    doc = fixture_snapshot(6)
    doc["peers"][2]["routines"][1]["header_sync"]["queue_depth"] = "12"
    with pytest.raises(SnapshotSchemaError) as err:
        validate_snapshot(doc)
    assert err.value.path == "$.peers[2].routines[1].header_sync.queue_depth"
    assert "Expected `int`, got `str`" in err.value.problem
    assert "$.peers[2].routines[1].header_sync.queue_depth" in str(err.value)
    # The same mismatch read straight from JSON is reported at the same place.
    with pytest.raises(SnapshotSchemaError) as err2:
        decode_snapshot(orjson.dumps(doc))
    assert err2.value.path == err.value.path


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d["block_sync"]["peers"].pop("unreceived"), "$.block_sync.peers", "unreceived"),
        (lambda d: d["node"].update(allow_faults=1), "$.node.allow_faults", "bool"),
        (lambda d: d["transport"].update(connections=True), "$.transport.connections", "bool"),
        (lambda d: d["chain"]["header_tip"].update(height=1.5), "$.chain.header_tip.height", ""),
        (lambda d: d["peers"][0].update(routines=None), "$.peers[0].routines", "null"),
        (lambda d: d["peers"][1].update(listen_port="41001"), "$.peers[1].listen_port", "str"),
        (lambda d: d["routines_summary"]["discovery"].update(running="3"), "$.routines_", "str"),
        (lambda d: d["block_sync"].update(stall={"height": 1}), "$.block_sync.stall", "waiting_s"),
        (lambda d: d.pop("boot_id"), "$", "boot_id"),
        (
            lambda d: d.update(diagnostics=[{"id": "peer_parked", "severity": "warning"}]),
            "$.diagnostics[0]",
            "subject",
        ),
        (lambda d: d.update(diagnostics={"id": "x"}), "$.diagnostics", "array"),
    ],
)
def test_each_kind_of_mismatch_names_where(mutate: Any, path: str, words: str) -> None:
    doc = fixture_snapshot(6)
    mutate(doc)
    with pytest.raises(SnapshotSchemaError) as err:
        validate_snapshot(doc)
    assert err.value.path.startswith(path), err.value
    assert words in err.value.problem


def test_another_schema_version_or_no_object_is_refused_at_the_root() -> None:
    for version in (1, 3, "2", None, True):
        doc = fixture_snapshot(2)
        doc["schema"] = version
        with pytest.raises(SnapshotSchemaError, match="this build reads 2") as err:
            validate_snapshot(doc)
        assert err.value.path == "$.schema"
        with pytest.raises(SnapshotSchemaError) as err2:
            decode_snapshot(orjson.dumps(doc))
        assert err2.value.path == "$.schema"
    with pytest.raises(SnapshotSchemaError) as err:
        validate_snapshot([fixture_snapshot(1)])
    assert err.value.path == "$"
    with pytest.raises(SnapshotSchemaError, match="not JSON") as err:
        decode_snapshot(b'{"schema": 2,')
    assert err.value.path == "$"


def test_unknown_keys_are_ignored_so_an_older_client_reads_a_newer_node() -> None:
    doc = fixture_snapshot(3)
    doc["fleet"] = {"nodes": 6}
    doc["peers"][0]["routines"][0]["discovery"]["new_counter"] = 7
    doc["block_sync"]["peers"]["future"] = [1, 2]
    checked = validate_snapshot(doc)
    assert "fleet" not in checked
    assert "new_counter" not in checked["peers"][0]["routines"][0]["discovery"]
    assert checked["journal_seq"] == doc["journal_seq"]


def test_optional_routine_sub_documents_may_be_absent() -> None:
    doc = fixture_snapshot(2)
    for peer in doc["peers"]:
        for routine in peer["routines"]:
            for key in ("discovery", "header_sync", "block_sync"):
                routine.pop(key, None)
    validate_snapshot(doc)


# ------------------------------------------------------------------ live nodes


def bootstrap(node: Node) -> tuple[tuple[str, int]]:
    return (("127.0.0.1", node.transport.listen_port),)


#: Fields computed from the clock when the document is built.
CLOCK_KEYS = frozenset({"age_s", "stalled_for_s"})


def without_clock(doc: Any) -> Any:
    """``doc`` with :data:`CLOCK_KEYS` removed at every depth."""
    if isinstance(doc, dict):
        return {k: without_clock(v) for k, v in doc.items() if k not in CLOCK_KEYS}
    if isinstance(doc, list):
        return [without_clock(v) for v in doc]
    return doc


def running_services(node: Node, label: str) -> set[str]:
    return {
        r["service"]
        for p in node.snapshot()["peers"]
        if p["label"] == label
        for r in p["routines"]
        if r["state"] == "running"
    }


async def test_a_live_cluster_snapshot_matches_the_schema(tmp_path: Path) -> None:
    """A hub with a chain and three leaves syncing it; one leaf parked, one stalled and
    throttled, one disconnected (so ``recently_closed`` is filled) and a misbehavior record:
    every optional part of the document is populated on some node."""
    cluster = Cluster(tmp_path)
    try:
        hub = await cluster.start("hub", allow_faults=True, blocks=40, target_peers=3)
        leaves = [
            await cluster.start(f"leaf{i}", bootstrap=bootstrap(hub), target_peers=1)
            for i in range(3)
        ]
        for leaf in leaves:
            await wait_until(
                lambda leaf=leaf: (
                    running_services(hub, leaf.label) >= {"discovery", "header_sync", "block_sync"}
                ),
                what=f"hub runs {leaf.label}'s routines",
            )
        await wait_until(
            lambda: all(leaf.chain.verified_tip[0] == 40 for leaf in leaves),
            timeout=20,
            what="leaves synced 40 blocks",
        )
        parked, slowed, dropped = leaves
        await hub.faults.park(parked.label)
        await hub.faults.stall(slowed.label, "header_sync", seconds=60)
        await hub.faults.stall(slowed.label, "block_sync", seconds=60)
        await hub.faults.throttle(slowed.label, 64 * 1024)
        await hub.faults.disconnect(dropped.label)
        hub.misbehavior.record(dropped.label, "discovery", "schema_test", action="logged")
        await wait_until(
            lambda: any(c.peer.label == dropped.label for c in hub.transport.recently_closed),
            what="the dropped connection in recently_closed",
        )

        snap = assert_matches(hub.snapshot())
        assert [p["label"] for p in snap["parked"]] == [parked.label]
        assert snap["misbehavior"] and snap["misbehavior_tally"]
        assert any(c["label"] == dropped.label for c in snap["recently_closed"])
        slowed_row = next(p for p in snap["peers"] if p["label"] == slowed.label)
        assert slowed_row["throttle_bytes_per_s"] == 64 * 1024
        views = {r["service"]: r for r in slowed_row["routines"] if r["state"] == "running"}
        assert views["header_sync"]["header_sync"]["stalled_for_s"] is not None
        assert views["block_sync"]["block_sync"]["stalled_for_s"] is not None
        assert views["discovery"]["discovery"]["outcome"] in ("running", "complete")
        assert snap["chain"]["verified_tip"]["height"] == 40
        assert snap["boot_id"] == hub.boot_id

        # The API's peer and misbehavior routes build only their parts; each part is the
        # same as in the whole document (built in the same synchronous step, so only what
        # reads the clock may differ).
        hub.misbehavior.record(slowed.label, "header_sync", "schema_test", action="logged")
        whole = hub.snapshot()
        for leaf in leaves:
            row = peer_row(hub, leaf.label)
            expected = next((p for p in whole["peers"] if p["label"] == leaf.label), None)
            assert without_clock(row) == without_clock(expected), leaf.label
        assert (peer_row(hub, slowed.label) or {}).get("misbehavior_count") == 1
        assert peer_row(hub, "peer:ffffffffffffffff") is None
        assert parked_rows(hub) == whole["parked"]
        assert misbehavior_rows(hub) == whole["misbehavior"]
        assert misbehavior_tally(hub) == whole["misbehavior_tally"]

        for leaf in leaves:  # the other side: block-sync windows measured, blocks accepted
            leaf_snap = assert_matches(leaf.snapshot())
            assert leaf_snap["block_sync"]["committed_total"] >= 40 or leaf is dropped
    finally:
        await cluster.stop()


async def test_boot_id_is_fixed_for_a_run_and_new_after_a_restart(tmp_path: Path) -> None:
    first = Node(NodeConfig(data_dir=tmp_path / "n"))
    await first.start()
    try:
        a, b = first.snapshot(), first.snapshot()
        assert re.fullmatch(r"[0-9a-f]{16}", a["boot_id"])
        assert a["boot_id"] == b["boot_id"] == first.boot_id
        assert b["journal_seq"] >= a["journal_seq"] > 0
    finally:
        await first.stop()
    second = Node(NodeConfig(data_dir=tmp_path / "n"))
    await second.start()
    try:
        c = second.snapshot()
        assert c["node"]["id"] == a["node"]["id"]  # the same node (same data dir, same key)
        assert c["boot_id"] != a["boot_id"]  # another run: its journal counts from 1 again
        assert second.journal.since(0)[0].seq == 1
        assert c["node"]["started_at"] >= a["node"]["started_at"]
        assert_matches(c)
    finally:
        await second.stop()


async def test_the_api_snapshot_route_serves_a_document_that_matches(tmp_path: Path) -> None:
    from node_core.api.tokens import TokenStore
    from node_core.control import Role

    data_dir = tmp_path / "api-node"
    token = TokenStore(data_dir).create("schema-test", Role.VIEWER)
    node = Node(NodeConfig(data_dir=data_dir, api=("127.0.0.1", 0)))
    await node.start()
    try:
        url = f"http://{node.api_address}/api/v1/snapshot"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            assert resp.status == 200
            body = await resp.read()
        snap = decode_snapshot(body)
        assert snap["boot_id"] == node.boot_id
        assert snap["node"]["api"] == node.api_address
        assert_matches(orjson.loads(body))
        # What a client would see of a restart: keep the old document, compare ids.
        restarted = copy.deepcopy(orjson.loads(body))
        restarted["boot_id"] = "0" * 16
        assert validate_snapshot(restarted)["boot_id"] != snap["boot_id"]
    finally:
        await node.stop()
