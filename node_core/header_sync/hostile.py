"""A deliberately misbehaving header-sync (stream kind 5) for testnets: ``--hostile-mode``.

Why: the honest node's defences - record-only vs disconnect (reference §3.14), request
timeouts with ``DropExpectation`` and the late-answer tolerance credit, parking - are only
believable once something on a live network attacks them. :class:`HostileHeaderSync` has the
same name, kind, version, capability and frame cap as
:class:`~node_core.header_sync.service.HeaderSyncService`, so a node that registers it as an
extra service gets it *instead of* the honest one (the Node's built-in replacement seam), and
its peers cannot tell the difference until it misbehaves.

Every message is built with the real codec (:mod:`node_core.protocol.header_sync`); only
``malformed-headers`` sends bytes that codec would refuse to decode, on purpose. A hostile node
never syncs: its reactor has no peers. It advertises the tip of its own chain (pre-generate one
with ``--blocks``, so honest nodes behind it ask it for headers) and, in the modes that answer
requests, serves from its own store.

The two *forging* modes (:data:`FORGING_MODES`) advertise one header more than their chain
holds: a header they made themselves on their tip (:func:`forge_child`), real proof of work
and all, whose body nobody has - the node's block sync stays honest and serves only its store,
which never holds it. ``header-without-body`` makes it valid in every respect: an honest victim
takes it and must notice that no peer ever serves the body (issue 16: one such header used to
stop block sync for good). ``backwards-time`` stamps it before its parent: a victim must refuse
it as an invalid range and never store it. One forged header per node, made on first use and
made again only if the node's tip moved, so every victim is shown the same one.

One supervised routine per peer, launched through ``conn.launch`` like the honest one, so the
transport's supervision, cancellation and fault injection apply unchanged; every wait goes
through the stream or ``ctx.wait_future``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from node_core.chain.model import HEADER_VERSION, BlockHeader, body_root
from node_core.chain.pow import DEMO_BITS, solve
from node_core.protocol.errors import CodecError
from node_core.protocol.header_sync import (
    DEFAULT_HEADERS_PER_RESPONSE,
    HEADER_SYNC_STREAM_KIND,
    HEADER_SYNC_STREAM_VERSION,
    HEADER_WIRE_BYTES,
    HS_FRAME_CAP,
    TAG_GET_HEADERS,
    TAG_HEADERS,
    TAG_STATUS,
    GetHeaders,
    Headers,
    Status,
    decode_header_sync_frame,
    encode_header_sync,
)
from node_core.protocol.limits import Capability

if TYPE_CHECKING:
    from node_core.chain.chainstate import ChainState
    from node_core.protocol.frames import Frame
    from node_core.transport.connection import Connection
    from node_core.transport.routine import RoutineContext
    from node_core.transport.stream import Stream

#: Must equal ``node_core.header_sync.entries.SERVICE`` (a test checks): peers and the console
#: label routines by it. Not imported, so the CLI can list the modes without loading the node.
SERVICE = "header_sync"

#: ``status-spam``: seconds between two identical Status frames (the victim's meter is 5 s).
STATUS_SPAM_INTERVAL = 0.1
#: ``early-getheaders``: seconds between two GetHeaders sent without ever sending a Status.
EARLY_GET_HEADERS_INTERVAL = 0.5
#: ``unsolicited-headers``: seconds between unsolicited Headers while the connection lives (a
#: victim holding a late-answer credit absorbs one; the next one is the violation).
UNSOLICITED_INTERVAL = 1.0
#: ``slow-responder``: default answer delay, just past the reference's 30 s request timeout.
DEFAULT_HOSTILE_DELAY = 35.0
#: Forging modes: size of the random body whose root the forged header commits to (also its
#: advertised body-size hint); the body itself is thrown away at once.
FORGED_BODY_BYTES = 8192
#: ``backwards-time``: how many seconds before its parent the forged header is stamped.
BACKWARDS_SECONDS = 1000


class HostileMode(StrEnum):
    """How a hostile header-sync misbehaves; the value is the command-line spelling."""

    STATUS_SPAM = "status-spam"
    UNSOLICITED_HEADERS = "unsolicited-headers"
    MALFORMED_HEADERS = "malformed-headers"
    EARLY_GET_HEADERS = "early-getheaders"
    SLOW_RESPONDER = "slow-responder"
    SILENT = "silent"
    HEADER_WITHOUT_BODY = "header-without-body"
    BACKWARDS_TIME = "backwards-time"


#: Every mode's spelling, in the order the help text lists them.
HOSTILE_MODES: tuple[str, ...] = tuple(m.value for m in HostileMode)

#: Modes whose attack happens only when a victim asks them for headers: on a testnet they need
#: a chain that is ahead of the honest nodes', or nobody would ever send them a GetHeaders.
#: The forging modes also attack only when asked, but need no lead: their forged header puts
#: them one ahead of the chain they share with the honest nodes, and that header is the attack.
ASKED_MODES = frozenset(
    {HostileMode.MALFORMED_HEADERS, HostileMode.SLOW_RESPONDER, HostileMode.SILENT}
)

#: Modes that advertise and serve a forged header one above their own tip (:func:`forge_child`).
FORGING_MODES = frozenset({HostileMode.HEADER_WITHOUT_BODY, HostileMode.BACKWARDS_TIME})


@dataclass(frozen=True, slots=True)
class ModeHelp:
    """What a mode does on the wire, and what an honest victim is expected to do about it."""

    does: str
    victims: str


MODE_HELP: dict[HostileMode, ModeHelp] = {
    HostileMode.STATUS_SPAM: ModeHelp(
        "sends a Status with an unchanged tip every 100 ms",
        "record status_spam (record-only) and keep the connection",
    ),
    HostileMode.UNSOLICITED_HEADERS: ModeHelp(
        "after its Status, sends Headers nobody asked for (every 1 s)",
        "disconnect it with unsolicited_headers (it redials; each session ends the same way)",
    ),
    HostileMode.MALFORMED_HEADERS: ModeHelp(
        "answers every GetHeaders with a truncated Headers payload that fails decode",
        "disconnect it with malformed_message and re-queue the range",
    ),
    HostileMode.EARLY_GET_HEADERS: ModeHelp(
        "never sends a Status and sends GetHeaders every 500 ms",
        "record get_headers_spam (record-only), serve nothing, keep the connection",
    ),
    HostileMode.SLOW_RESPONDER: ModeHelp(
        "serves correct headers from its chain, each answer delayed by --hostile-delay "
        "(default 35 s, past the 30 s request timeout)",
        "time the request out, re-queue the range, drop the expectation and absorb the late "
        "answer with the tolerance credit; no misbehavior, no disconnect",
    ),
    HostileMode.SILENT: ModeHelp(
        "sends one Status (so it is asked for work), then never reads or writes again",
        "time their requests out and re-queue the ranges; never park or disconnect it",
    ),
    HostileMode.HEADER_WITHOUT_BODY: ModeHelp(
        "advertises a header one above its chain's tip that it made itself (valid in every "
        "respect, proof of work included) and serves it after its real headers; nobody ever "
        "serves that header's body",
        "store the header, find that nobody serves its body, give the header up after 15 s "
        "(journal header_sync/abandoned, snapshot header_sync.abandoned), then refuse it for "
        "2 minutes and ask the peers that advertise it for nothing above its parent; keep "
        "syncing from honest peers",
    ),
    HostileMode.BACKWARDS_TIME: ModeHelp(
        "like header-without-body, but its forged header's time is 1000 s before its parent's",
        "record invalid_range (record-only) and never store the header; keep syncing from "
        "honest peers",
    ),
}


def parse_mode(text: str) -> HostileMode:
    """The mode spelled ``text``.

    Raises:
        ValueError: Naming every valid mode, so the operator can fix the flag at once.
    """
    try:
        return HostileMode(text)
    except ValueError:
        raise ValueError(
            f"unknown hostile mode {text!r}; choose one of: {', '.join(HOSTILE_MODES)}"
        ) from None


def forge_child(
    parent: BlockHeader, *, backwards: bool = False, body: bytes | None = None
) -> BlockHeader:
    """A child of ``parent`` committing to ``body`` (default: random bytes nobody keeps).

    Valid in every respect - version, height, link, demo difficulty, solved proof of work -
    except, with ``backwards``, its time, :data:`BACKWARDS_SECONDS` before its parent's (never
    below 0; every network's genesis is far later than that). Without ``backwards`` it is one
    second after its parent, so only the missing body gives it away. Mined inline: at
    :data:`~node_core.chain.pow.DEMO_BITS` that is about 256 hashes, well under a millisecond.
    """
    if body is None:
        body = os.urandom(FORGED_BODY_BYTES)
    stamp = max(0, parent.time - BACKWARDS_SECONDS) if backwards else parent.time + 1
    header = BlockHeader(
        version=HEADER_VERSION,
        height=parent.height + 1,
        prev_hash=parent.hash,
        body_root=body_root(body),
        time=stamp,
        bits=DEMO_BITS,
        nonce=0,
    )
    return solve(header)


@dataclass(frozen=True, slots=True)
class _Due:
    """A GetHeaders the slow responder will answer at ``at`` (monotonic seconds)."""

    at: float
    start_height: int
    count: int


class HostileHeaderSync:
    """A header-sync service that misbehaves in one :class:`HostileMode`.

    Args:
        mode: The misbehavior (a :class:`HostileMode` or its spelling).
        chain: The node's chain: its header tip goes into Status, its store serves headers.
        delay: ``slow-responder`` only: seconds each answer is held back.

    Attributes:
        sent: Frames written, by kind (``status``, ``headers``, ``malformed_headers``,
            ``get_headers``, ``forged_headers`` for a Headers carrying the forged header): how a
            test or an operator sees that the attack really happened.
        requests: GetHeaders received from victims.
    """

    name = SERVICE
    kind = HEADER_SYNC_STREAM_KIND
    version = HEADER_SYNC_STREAM_VERSION
    capability = int(Capability.HEADER_SYNC)
    frame_cap = HS_FRAME_CAP
    message_rate: float | None = None

    def __init__(
        self, mode: HostileMode | str, chain: ChainState, *, delay: float = DEFAULT_HOSTILE_DELAY
    ) -> None:
        if not delay >= 0:
            raise ValueError(f"hostile delay must be >= 0 seconds, got {delay}")
        self.mode = parse_mode(str(mode))
        self.chain = chain
        self.delay = delay
        self.sent: Counter[str] = Counter()
        self.requests = 0
        self._forged: BlockHeader | None = None

    def add_peer(self, conn: Connection, stream: Stream) -> None:
        routine = _HostileRoutine(self, stream)
        conn.launch(SERVICE, stream, routine.run)

    def remove_peer(self, conn: Connection) -> None:
        """Nothing to forget: a hostile routine keeps no state beyond its own session."""

    def status(self) -> Status:
        """Our real tip: a lie about the tip would be a different attack (invalid_status)."""
        height, hash_ = self.chain.header_tip
        return Status(tip_height=height, tip_hash=hash_, anchor_height=0)

    async def advertised_status(self) -> Status:
        """What this mode's Status claims: the forged header in a forging mode, else our tip.

        Not a lie a victim can catch: the forging modes do serve that header when asked.
        """
        if self.mode not in FORGING_MODES:
            return self.status()
        forged = await self.forged_header()
        return Status(tip_height=forged.height, tip_hash=forged.hash, anchor_height=0)

    async def forged_header(self) -> BlockHeader:
        """The node's one forged header, on its current header tip (made on first use).

        Made again only if the tip moved since, so every victim sees the same header; the
        check after the store read has no await before the assignment, so two routines
        asking at once still end up with one header.
        """
        while True:
            height, tip_hash = self.chain.header_tip
            forged = self._forged
            if forged is not None and forged.prev_hash == tip_hash:
                return forged
            raw = await self.chain.store.header_at(height)
            if self.chain.header_tip[1] != tip_hash:
                continue  # the tip moved while we read it: forge on the new one
            if raw is None:  # pragma: no cover - header_tip is committed store state
                raise RuntimeError(f"header tip {height} is not in the store")
            parent = BlockHeader.decode(raw)
            forged = self._forged
            if forged is None or forged.prev_hash != parent.hash:
                forged = forge_child(parent, backwards=self.mode is HostileMode.BACKWARDS_TIME)
                self._forged = forged
            return forged

    async def headers(self, start_height: int, count: int) -> Headers:
        """Up to ``count`` stored headers from ``start_height``, as an honest node serves them."""
        served = max(1, min(count, DEFAULT_HEADERS_PER_RESPONSE))
        rows = await self.chain.store.headers_with_sizes(start_height, served)
        return Headers(tuple(r[0] for r in rows), tuple(r[1] for r in rows))

    async def headers_with_forged(self, start_height: int, count: int) -> tuple[Headers, bool]:
        """:meth:`headers`, plus the forged header when the answer reaches our tip and has room.

        So a victim at our tip that asks for the next height gets exactly the forged header,
        and one further behind gets our real chain with the forged header as its last one.
        Returns the answer and whether it carries the forged header.
        """
        forged = await self.forged_header()
        answer = await self.headers(start_height, count)
        served = max(1, min(count, DEFAULT_HEADERS_PER_RESPONSE))
        reaches_tip = start_height + len(answer.headers) == forged.height
        if not reaches_tip or len(answer.headers) >= served:
            return answer, False
        return (
            Headers(
                (*answer.headers, forged.raw),
                (*answer.body_sizes, FORGED_BODY_BYTES),
            ),
            True,
        )


class _HostileRoutine:
    """One session: an optional timer (the spam), a FIFO of delayed answers, and the reader."""

    def __init__(self, service: HostileHeaderSync, stream: Stream) -> None:
        self.service = service
        self.mode = service.mode
        self.stream = stream
        self.due: deque[_Due] = deque()

    async def run(self, ctx: RoutineContext) -> None:
        mode = self.mode
        if mode is not HostileMode.EARLY_GET_HEADERS:
            status = await self.service.advertised_status()
            await self._send(TAG_STATUS, encode_header_sync(status), "status")
        if mode is HostileMode.SILENT:
            # Never read (our receive window fills, the victim's writes stall) and never write.
            await ctx.wait_future(asyncio.get_running_loop().create_future())
            return
        interval = {
            HostileMode.STATUS_SPAM: STATUS_SPAM_INTERVAL,
            HostileMode.EARLY_GET_HEADERS: EARLY_GET_HEADERS_INTERVAL,
            HostileMode.UNSOLICITED_HEADERS: UNSOLICITED_INTERVAL,
        }.get(mode)
        now = time.monotonic()
        # Status spam starts one interval after the first Status (which the victim applies);
        # the other timed modes act at once.
        next_tick: float | None = None
        if interval is not None:
            next_tick = now + interval if mode is HostileMode.STATUS_SPAM else now
        stream = self.stream
        while True:
            now = time.monotonic()
            if next_tick is not None and interval is not None and now >= next_tick:
                await self._tick()
                next_tick = max(next_tick + interval, now)  # no catch-up burst after a stall
            while self.due and self.due[0].at <= now:
                item = self.due.popleft()
                answer = await self.service.headers(item.start_height, item.count)
                await self._send(TAG_HEADERS, encode_header_sync(answer), "headers")
            deadlines = [
                t for t in (next_tick, self.due[0].at if self.due else None) if t is not None
            ]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            frame = await stream.recv(timeout)
            if frame is None:
                if stream.remote_finished:
                    stream.finish()
                    return
                continue
            await self._on_frame(frame)

    async def _tick(self) -> None:
        mode = self.mode
        if mode is HostileMode.STATUS_SPAM:
            await self._send(TAG_STATUS, encode_header_sync(self.service.status()), "status")
        elif mode is HostileMode.EARLY_GET_HEADERS:
            await self._send(TAG_GET_HEADERS, encode_header_sync(GetHeaders(1, 1)), "get_headers")
        elif mode is HostileMode.UNSOLICITED_HEADERS:
            tip = self.service.chain.header_tip[0]
            headers = await self.service.headers(tip, 1)
            await self._send(TAG_HEADERS, encode_header_sync(headers), "headers")

    async def _on_frame(self, frame: Frame) -> None:
        """Only GetHeaders matters; everything else a victim sends is read and ignored."""
        if frame.message_type != TAG_GET_HEADERS:
            return
        try:
            msg = decode_header_sync_frame(frame.message_type, frame.flags, frame.payload)
        except CodecError:
            return
        if not isinstance(msg, GetHeaders):  # pragma: no cover - the tag says GetHeaders
            return
        self.service.requests += 1
        if self.mode is HostileMode.SLOW_RESPONDER:
            at = time.monotonic() + self.service.delay
            self.due.append(_Due(at, msg.start_height, msg.count))
        elif self.mode in FORGING_MODES:
            reply, forged = await self.service.headers_with_forged(msg.start_height, msg.count)
            what = "forged_headers" if forged else "headers"
            await self._send(TAG_HEADERS, encode_header_sync(reply), what)
        elif self.mode is HostileMode.MALFORMED_HEADERS:
            answer = encode_header_sync(await self.service.headers(msg.start_height, msg.count))
            # Cut into the last header (or into the count when there is none): the declared
            # count no longer fits the bytes, so the victim's decoder reports truncation.
            cut = answer[: max(3, len(answer) - HEADER_WIRE_BYTES // 2)]
            await self._send(TAG_HEADERS, cut, "malformed_headers")

    async def _send(self, tag: int, payload: bytes, what: str) -> None:
        await self.stream.send(tag, payload)
        self.service.sent[what] += 1
