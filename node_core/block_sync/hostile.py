"""A deliberately misbehaving block-sync (stream kind 6) for testnets: ``--hostile-mode``.

Why: the honest routine's body checks (``invalid_block``, ``unsolicited_block``, both
record-only per reference §4.13), its request deadlines, its probe-first window and its
no-progress liveness reject are only believable once something on a live network attacks
them. :class:`HostileBlockSync` has the same name, kind, version, capability, frame cap and
message rate as :class:`~node_core.block_sync.service.BlockSyncService`, so a node that
registers it as an extra service gets it *instead of* the honest one (the Node's built-in
replacement seam). Only block sync is replaced: the node's header sync stays honest, so its
peers sync headers from it as from anyone and cannot tell it apart until it misbehaves.

A hostile block server never downloads bodies; it advertises the servable range its own store
really holds (``1..verified tip``: pre-generate one with ``--blocks``), so victims ask it for
work, and then, per :class:`BlockHostileMode`, corrupts its answers, pushes blocks nobody
asked for, stays silent, or serves correctly at a trickle. Every frame is built with the real
codec (:mod:`node_core.protocol.block_sync`) from real blocks of its store.

This module also holds the registry of *every* hostile mode, both services'
(:data:`ALL_HOSTILE_MODES`, :data:`ALL_MODE_HELP`, :func:`parse_any_mode`): the command line
and :class:`~node_core.node.NodeConfig` take one ``--hostile-mode`` for either service, so the
names must not clash and one parser must know them all. It imports nothing that loads a node,
so the CLI can list the modes cheaply.

One supervised routine per peer plus one supervised serving helper, launched like the honest
service's, so the transport's supervision, cancellation and fault injection apply unchanged;
every wait goes through the stream or the routine context.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from node_core.header_sync.hostile import (
    HOSTILE_MODES,
    MODE_HELP,
    HostileMode,
    ModeHelp,
)
from node_core.protocol.block_sync import (
    BLOCK_SYNC_STREAM_KIND,
    BLOCK_SYNC_STREAM_VERSION,
    BS_FRAME_CAP,
    DEFAULT_BLOCKS_PER_RESPONSE,
    DEFAULT_INFLIGHT_REQUESTS,
    DEFAULT_RESPONSE_BYTES,
    EMPTY_SERVABLE_HIGH,
    EMPTY_SERVABLE_LOW,
    TAG_BLOCK,
    TAG_BLOCKS_DONE,
    TAG_GET_BLOCKS,
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
from node_core.protocol.errors import CodecError
from node_core.protocol.limits import FRAME_HEADER_BYTES, Capability

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.transport.connection import Connection
    from node_core.transport.routine import RoutineContext
    from node_core.transport.stream import Stream

#: Must equal ``node_core.block_sync.core.SERVICE`` (a test checks): peers and the console
#: label routines by it. Not imported, so the CLI can list the modes without loading the node.
SERVICE = "block_sync"

#: ``unsolicited-blocks``: seconds between two pushed Block frames while the connection lives.
UNSOLICITED_BLOCK_INTERVAL = 0.2
#: ``slow-blocks``: default throttle, the issue's "slow peer (64 KiB/s)".
DEFAULT_HOSTILE_RATE = 64 * 1024
#: Answers queued per peer, as the honest server's ``serving_slots``; beyond it the answer is
#: RangeUnavailable, so a hostile node's memory is bounded like an honest one's.
SERVING_SLOTS = 4


class BlockHostileMode(StrEnum):
    """How a hostile block-sync misbehaves; the value is the command-line spelling.

    No spelling may equal a :class:`~node_core.header_sync.hostile.HostileMode`'s, since one
    ``--hostile-mode`` names either (a test checks the union is disjoint); they end in
    ``-blocks`` or ``-body``, which the header mode ``header-without-body`` shares, so the
    suffix alone does not tell the service.
    """

    WRONG_BODY = "wrong-body"
    UNSOLICITED_BLOCKS = "unsolicited-blocks"
    SILENT_BLOCKS = "silent-blocks"
    SLOW_BLOCKS = "slow-blocks"


#: Every block mode's spelling, in the order the help text lists them.
BLOCK_HOSTILE_MODES: tuple[str, ...] = tuple(m.value for m in BlockHostileMode)

BLOCK_MODE_HELP: dict[BlockHostileMode, ModeHelp] = {
    BlockHostileMode.WRONG_BODY: ModeHelp(
        "advertises its real block range and answers every GetBlocks with the right headers "
        "but bodies with a flipped byte (they no longer match the header's body root)",
        "record invalid_block (record-only) for every body, keep the connection and fetch "
        "those heights again from honest peers",
    ),
    BlockHostileMode.UNSOLICITED_BLOCKS: ModeHelp(
        "serves GetBlocks correctly and also pushes a real block from its store nobody asked "
        "for every 200 ms, walking down from its tip",
        "record unsolicited_block (record-only) for a pushed height they do not track yet "
        "(above their header tip or look-ahead); silently ignore stale or still-needed ones; "
        "keep the connection",
    ),
    BlockHostileMode.SILENT_BLOCKS: ModeHelp(
        "advertises its real block range, then reads requests and never answers one",
        "give it one probe request, re-fetch its heights from others after the request "
        "timeout, and disconnect it with no_block_progress once the liveness timeout passes "
        "with a request outstanding",
    ),
    BlockHostileMode.SLOW_BLOCKS: ModeHelp(
        "serves correct blocks, throttled to --hostile-rate bytes/s (default 64 KiB/s)",
        "keep its window small and fetch most blocks from faster peers; no misbehavior, "
        "no disconnect",
    ),
}

#: Every hostile mode of both services, header-sync's first (the order --help lists them).
ALL_HOSTILE_MODES: tuple[str, ...] = (*HOSTILE_MODES, *BLOCK_HOSTILE_MODES)

#: What every mode does and what its victims should do, by spelling.
ALL_MODE_HELP: dict[str, ModeHelp] = {
    **{m.value: text for m, text in MODE_HELP.items()},
    **{m.value: text for m, text in BLOCK_MODE_HELP.items()},
}


def parse_block_mode(text: str) -> BlockHostileMode:
    """The block mode spelled ``text``.

    Raises:
        ValueError: Naming every valid block mode.
    """
    try:
        return BlockHostileMode(text)
    except ValueError:
        raise ValueError(
            f"unknown hostile block mode {text!r}; choose one of: {', '.join(BLOCK_HOSTILE_MODES)}"
        ) from None


def parse_any_mode(text: str) -> HostileMode | BlockHostileMode:
    """The header-sync or block-sync mode spelled ``text``: which service turns hostile.

    Raises:
        ValueError: Naming every valid mode of both services, so the operator can fix the
            flag at once.
    """
    for parse in (HostileMode, BlockHostileMode):
        try:
            return parse(text)
        except ValueError:
            continue
    raise ValueError(
        f"unknown hostile mode {text!r}; choose one of: {', '.join(ALL_HOSTILE_MODES)}"
    )


def corrupt_body(body: bytes) -> bytes:
    """``body`` with its first byte flipped (one byte appended to an empty body).

    Same length, so the victim cannot reject it on size: only the body-root check catches it.
    """
    if not body:
        return b"\x00"
    return bytes([body[0] ^ 0xFF]) + body[1:]


@dataclass(frozen=True, slots=True)
class _Pacer:
    """``slow-blocks``: when the next frame of a paced stream may go out (monotonic seconds)."""

    free_at: float

    def after(self, nbytes: int, rate: int, now: float) -> _Pacer:
        """The pacer once ``nbytes`` more went out at ``rate`` bytes/s, starting no earlier
        than ``now`` (an idle gap earns no burst)."""
        return _Pacer(max(self.free_at, now) + nbytes / rate)


class HostileBlockSync:
    """A block-sync service that misbehaves in one :class:`BlockHostileMode`.

    Args:
        mode: The misbehavior (a :class:`BlockHostileMode` or its spelling).
        chain: The node's chain: its verified tip goes into Status, its store serves blocks.
        rate: ``slow-blocks`` only: bytes per second every answer is throttled to.

    Attributes:
        sent: Frames written, by kind (``status``, ``block``, ``wrong_body``,
            ``unsolicited_block``, ``blocks_done``, ``range_unavailable``): how a test or an
            operator sees that the attack really happened.
        requests: GetBlocks received from victims.
        bytes_sent: Wire bytes (frame headers included) written by every session.
    """

    name = SERVICE
    kind = BLOCK_SYNC_STREAM_KIND
    version = BLOCK_SYNC_STREAM_VERSION
    capability = int(Capability.BLOCK_SYNC)
    frame_cap = BS_FRAME_CAP
    message_rate: float | None = 20_000.0

    def __init__(
        self, mode: BlockHostileMode | str, chain: ChainState, *, rate: int = DEFAULT_HOSTILE_RATE
    ) -> None:
        if rate <= 0:
            raise ValueError(f"hostile rate must be > 0 bytes/s, got {rate}")
        self.mode = parse_block_mode(str(mode))
        self.chain = chain
        self.rate = rate
        self.sent: Counter[str] = Counter()
        self.requests = 0
        self.bytes_sent = 0

    def add_peer(self, conn: Connection, stream: Stream) -> None:
        # Imported here so the CLI can import this module for the mode list cheaply.
        from node_core.transport.supervise import spawn_supervised_peer_task

        routine = _HostileBlockRoutine(self, stream, conn.negotiated.limits.max_message_bytes)
        handle = conn.launch(SERVICE, stream, routine.run)
        if self.mode is not BlockHostileMode.SILENT_BLOCKS:
            spawn_supervised_peer_task(
                handle.ctx, routine.serve, journal=conn.journal, metrics=conn.metrics
            )

    def remove_peer(self, conn: Connection) -> None:
        """Nothing to forget: a hostile routine keeps no state beyond its own session."""

    def status(self) -> Status:
        """Our real servable range: a lie about it would be a different attack."""
        verified, hash_ = self.chain.verified_tip
        low, high = (1, verified) if verified >= 1 else (EMPTY_SERVABLE_LOW, EMPTY_SERVABLE_HIGH)
        return Status(
            low,
            high,
            hash_,
            DEFAULT_BLOCKS_PER_RESPONSE,
            DEFAULT_INFLIGHT_REQUESTS,
            DEFAULT_RESPONSE_BYTES,
        )


class _HostileBlockRoutine:
    """One session: the reader (with the push timer) and the serving helper."""

    def __init__(self, service: HostileBlockSync, stream: Stream, max_message: int) -> None:
        self.service = service
        self.mode = service.mode
        self.stream = stream
        self.max_message = max_message
        self.queue: asyncio.Queue[GetBlocks] = asyncio.Queue(SERVING_SLOTS)
        self.pacer = _Pacer(0.0)
        self.next_push = 0  # unsolicited-blocks: the height pushed next (0: start at the tip)

    async def run(self, ctx: RoutineContext) -> None:
        await self._send(ctx, TAG_STATUS, encode_block_sync(self.service.status()), "status")
        pushing = self.mode is BlockHostileMode.UNSOLICITED_BLOCKS
        # The first push goes out at once, right behind the Status: a victim that has just
        # connected tracks few heights yet, so that block is certainly unsolicited.
        next_tick = time.monotonic() if pushing else None
        stream = self.stream
        while True:
            if next_tick is not None and time.monotonic() >= next_tick:
                await self._push(ctx)
                next_tick = max(next_tick + UNSOLICITED_BLOCK_INTERVAL, time.monotonic())
            timeout = None if next_tick is None else max(0.0, next_tick - time.monotonic())
            frame = await stream.recv(timeout)
            if frame is None:
                if stream.remote_finished:
                    stream.finish()
                    return
                continue
            if frame.message_type != TAG_GET_BLOCKS:
                continue  # the victim's Status and anything else: read and ignored
            try:
                msg = decode_block_sync_frame(frame.message_type, frame.flags, frame.payload)
            except CodecError:
                continue
            if not isinstance(msg, GetBlocks):  # pragma: no cover - the tag says GetBlocks
                continue
            self.service.requests += 1
            if self.mode is BlockHostileMode.SILENT_BLOCKS:
                continue  # read (so the victim's writes never stall), never answered
            try:
                self.queue.put_nowait(msg)
            except asyncio.QueueFull:
                answer = encode_block_sync(RangeUnavailable(msg.start_height, msg.count))
                await self._send(ctx, TAG_RANGE_UNAVAILABLE, answer, "range_unavailable")

    async def serve(self, ctx: RoutineContext) -> None:
        """Answer queued GetBlocks in order: corrupted, correct, or correct but throttled."""
        store = self.service.chain.store
        while True:
            msg = await self.queue.get()
            verified = self.service.chain.verified_tip[0]
            if msg.start_height < 1 or msg.start_height > verified:
                answer = encode_block_sync(RangeUnavailable(msg.start_height, msg.count))
                await self._send(ctx, TAG_RANGE_UNAVAILABLE, answer, "range_unavailable")
                continue
            count = min(msg.count, DEFAULT_BLOCKS_PER_RESPONSE, verified - msg.start_height + 1)
            budget = min(DEFAULT_RESPONSE_BYTES, self.max_message * 8)
            blocks = await store.blocks_range(msg.start_height, count, budget)
            wrong = self.mode is BlockHostileMode.WRONG_BODY
            for header, body in blocks:
                payload = encode_block_sync(Block(header, corrupt_body(body) if wrong else body))
                await self._send(ctx, TAG_BLOCK, payload, "wrong_body" if wrong else "block")
            done = encode_block_sync(BlocksDone(msg.start_height, len(blocks)))
            await self._send(ctx, TAG_BLOCKS_DONE, done, "blocks_done")

    async def _push(self, ctx: RoutineContext) -> None:
        """``unsolicited-blocks``: one real block nobody asked for, walking down from the tip."""
        tip = self.service.chain.verified_tip[0]
        if tip < 1:
            return
        height = self.next_push if 1 <= self.next_push <= tip else tip
        self.next_push = height - 1
        rows = await self.service.chain.store.blocks_range(height, 1, DEFAULT_RESPONSE_BYTES)
        for header, body in rows:
            payload = encode_block_sync(Block(header, body))
            await self._send(ctx, TAG_BLOCK, payload, "unsolicited_block")

    async def _send(self, ctx: RoutineContext, tag: int, payload: bytes, what: str) -> None:
        nbytes = FRAME_HEADER_BYTES + len(payload)
        if self.mode is BlockHostileMode.SLOW_BLOCKS:
            # Pace before the frame, so the stream never averages above the rate.
            now = time.monotonic()
            wait = max(self.pacer.free_at, now) - now
            self.pacer = self.pacer.after(nbytes, self.service.rate, now)
            if wait > 0:
                await ctx.sleep(wait)
        await self.stream.send(tag, payload)
        self.service.sent[what] += 1
        self.service.bytes_sent += nbytes
