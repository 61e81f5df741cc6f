"""Shared pieces of the block-sync integration tests (imported as ``bskit``).

``ScriptedServer`` is a stand-in block-sync service (kind 6) for the *server* side of a test:
it serves real blocks from its node's store, but a ``policy`` decides per request what to do
(answer, withhold, drop silently, never answer), so a scenario can script one misbehaving
peer while the client under test runs the real routine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_core.node import Node
from node_core.protocol.block_sync import (
    BS_FRAME_CAP,
    TAG_BLOCK,
    TAG_BLOCKS_DONE,
    TAG_RANGE_UNAVAILABLE,
    TAG_STATUS,
    Block,
    BlocksDone,
    GetBlocks,
    RangeUnavailable,
    Status,
    decode_block_sync_frame,
    encode_block_sync,
)
from node_core.protocol.limits import Capability

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from nodekit import Cluster, wait_until  # noqa: F401  (re-exported for the tests)

#: What a policy returns for one GetBlocks: "serve", "withhold" (RangeUnavailable), "drop"
#: (BlocksDone with the blocks silently left out), "ignore" (never answer) or "corrupt"
#: (every block served with a body that does not match its header's body root).
Policy = Callable[[GetBlocks], str]


class ScriptedServer:
    """Kind-6 stand-in that serves its node's blocks the way ``policy`` says."""

    name = "block_sync"
    kind = 6
    version = 1
    capability = int(Capability.BLOCK_SYNC)
    frame_cap = BS_FRAME_CAP
    message_rate: float | None = 20_000.0

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.node: Node | None = None
        self.requests: list[GetBlocks] = []
        #: Requests per connection (a redial is a new session with a fresh probe).
        self.by_conn: dict[int, list[GetBlocks]] = {}

    def add_peer(self, conn: Any, stream: Any) -> None:
        async def routine(ctx: Any) -> None:
            node = self.node
            assert node is not None, "set ScriptedServer.node after starting its node"
            height, hash_ = node.chain.verified_tip
            status = Status(1, height, hash_, 16, 32_000, 32 * 1024 * 1024)
            await stream.send(TAG_STATUS, encode_block_sync(status))
            while (frame := await stream.recv()) is not None:
                msg = decode_block_sync_frame(frame.message_type, frame.flags, frame.payload)
                if not isinstance(msg, GetBlocks):
                    continue
                self.requests.append(msg)
                self.by_conn.setdefault(conn.peer.conn_id, []).append(msg)
                action = self.policy(msg)
                if action == "ignore":
                    continue
                if action == "withhold":
                    answer = RangeUnavailable(msg.start_height, msg.count)
                    await stream.send(TAG_RANGE_UNAVAILABLE, encode_block_sync(answer))
                    continue
                blocks = await node.chain.store.blocks_range(msg.start_height, msg.count, 1 << 30)
                sent = 0
                if action in ("serve", "corrupt"):
                    for header, body in blocks:
                        if action == "corrupt":
                            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else b"x"
                        await stream.send(TAG_BLOCK, encode_block_sync(Block(header, body)))
                        sent += 1
                done = BlocksDone(msg.start_height, sent)
                await stream.send(TAG_BLOCKS_DONE, encode_block_sync(done))

        conn.launch(self.name, stream, routine)

    def remove_peer(self, conn: Any) -> None:
        return None


def bootstrap(*nodes: Node) -> tuple[tuple[str, int], ...]:
    return tuple(("127.0.0.1", n.transport.listen_port) for n in nodes)


async def assert_synced_and_sound(client: Node, target: Node) -> None:
    """The scenario invariants: target reached, store sound, ledger empty, bounds held."""
    assert client.chain.verified_tip == target.chain.verified_tip
    assert await client.chain.check_consistency() == []
    core = client.block_sync
    live = {r.label: r.owner[1] for r in core.routines.values()}
    assert core.work.invariant_violations(live) == []
    assert core.budget.used == 0, "every reserved and held byte was released"
    assert core.peak_budget_used <= core.budget.max_bytes
    caps = sum(r.window.hard_cap for r in core.routines.values()) or 1
    assert core.peak_outstanding <= caps + 8
    assert not core.sequencer.buffer and not core.sequencer.applying
    assert core.registry.total_unreceived() == 0, "no peer is left owing a height"
    # Contiguous, exactly-once commits: every height the client committed, once.
    tip = client.chain.verified_tip[0]
    committed = sorted(core.commits)
    assert committed == list(range(committed[0], tip + 1)) if committed else tip == 0
    assert set(core.commits.values()) <= {1}, "a height was committed twice"
