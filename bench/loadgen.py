"""Load generator: N lightweight protocol peers against one node, in a process of their own.

Why: the scale benchmark (:mod:`bench.scale_peers`) must measure the node, not the machinery
that loads it. A full :class:`node_core.node.Node` per peer would cost the load generator far
more than the peer costs the node, so each peer here is the least a real peer is on the wire
(docs/PROTOCOL.md): its own Ed25519 identity, a real TCP connection on 127.0.0.1, the control
handshake (:func:`node_core.transport.handshake_io.initiate`), then as the initiator one
ordered stream per negotiated service:

- discovery (kind 4): Hello with its own signed record, GetPeers, GetServices at once; it
  answers the node's GetPeers (an empty Peers: it knows nobody) and GetServices, and every
  :data:`REFRESH_SECS` asks GetPeers again, as a node's routine does (§7.4);
- header sync (kind 5): its Status at genesis, then idle; a GetHeaders gets an empty Headers;
- block sync (kind 6): the empty-range Status, then idle; a GetBlocks gets RangeUnavailable.

It sends a keepalive PING every :data:`PING_SECS` and returns stream credit for what it reads
(§5.5). The codecs are the node's own sans-I/O modules, so the bytes are the protocol's.

``python -m bench.loadgen --target HOST:PORT --peers N`` prints JSON lines on stdout: one
``{"event": "connected", ...}`` once every dial finished (how many are up, how long the
handshakes took), then a ``status`` line whenever stdin receives a line (the bench asks), and
it stops, closing every connection, when stdin closes or on SIGTERM.

``--raw-server`` instead runs a bare asyncio TCP server that only reads, and ``--raw`` makes
the peers open bare TCP connections to it: the floor a Python process pays per connection,
the baseline of the benchmark's memory figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from node_core.chain.genesis import genesis_hash
from node_core.discovery.records import make_record
from node_core.discovery.service import SERVICE_ID
from node_core.identity import Identity
from node_core.protocol import block_sync as bs
from node_core.protocol import discovery as disc
from node_core.protocol import handshake as hs
from node_core.protocol import header_sync as hsync
from node_core.protocol import mux
from node_core.protocol.flow import RecvWindow, stream_window
from node_core.protocol.frames import FrameDecoder, encode_frame
from node_core.protocol.limits import (
    FRAME_HEADER_BYTES,
    MUX_HEADER_BYTES,
    PROTOCOL_VERSION,
    Capability,
    NetworkId,
)
from node_core.transport.handshake_io import initiate

HOST = "127.0.0.1"
PING_SECS = 10.0
REFRESH_SECS = 10.0
DIAL_TIMEOUT = 30.0
DISCOVERY_CAP = disc.MAX_DISCOVERY_MESSAGE_BYTES + FRAME_HEADER_BYTES
#: stream id (the initiator's odd ids), kind, version, frame cap, capability bit.
STREAMS = (
    (1, 4, 1, DISCOVERY_CAP, Capability.DISCOVERY),
    (3, hsync.HEADER_SYNC_STREAM_KIND, 1, hsync.HS_FRAME_CAP, Capability.HEADER_SYNC),
    (5, bs.BLOCK_SYNC_STREAM_KIND, 1, bs.BS_FRAME_CAP, Capability.BLOCK_SYNC),
)
CAPABILITIES = Capability.DISCOVERY | Capability.HEADER_SYNC | Capability.BLOCK_SYNC


def identity_for(seed: int, index: int) -> Identity:
    """The ``index``-th peer's key: deterministic, so a run is repeatable."""
    return Identity.from_seed(hashlib.sha256(f"loadgen-{seed}-{index}".encode()).digest())


@dataclass
class Counters:
    """What every peer saw, summed (the proof that the exchanges happened)."""

    frames_in: dict[str, int] = field(default_factory=dict)
    frames_out: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    dial_errors: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def bump(table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


class Peer:
    """One connection's protocol state: decoders, receive windows, outstanding requests."""

    def __init__(self, identity: Identity, network: NetworkId, counters: Counters) -> None:
        self.identity = identity
        self.network = network
        self.chain_id = genesis_hash(network)
        self.counters = counters
        self.writer: asyncio.StreamWriter | None = None
        self.peer_id = b""
        self.kinds: dict[int, int] = {}  # stream id -> kind
        self.decoders: dict[int, FrameDecoder] = {}
        self.windows: dict[int, RecvWindow] = {}
        self.get_peers_outstanding = False
        self.nonce = 0
        self.closed_reason: str | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.writer is not None and self.closed_reason is None

    async def connect(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        local = hs.LocalParams(
            network_id=int(self.network),
            chain_id=self.chain_id,
            node_id=self.identity.node_id,
            capabilities=int(CAPABILITIES),
            limits=hs.DEFAULT_LIMITS,
            listen_port=0,
        )
        try:
            result = await initiate(reader, writer, self.identity, local)
        except BaseException:
            writer.close()
            raise
        self.writer, self.peer_id = writer, result.peer_node_id
        out = bytearray()
        for sid, kind, version, cap, bit in STREAMS:
            if result.negotiated.capabilities & bit:
                prelude = mux.encode_prelude(mux.StreamPrelude(kind, version, cap))
                out += mux.encode_record(mux.RecordType.OPEN, sid, prelude)
                self.kinds[sid] = kind
                self.decoders[sid] = FrameDecoder(cap - FRAME_HEADER_BYTES)
                self.windows[sid] = RecvWindow(stream_window(cap))
        writer.write(bytes(out))
        port_hint = writer.get_extra_info("sockname")[1]
        record = make_record(
            self.identity,
            addrs=[disc.SocketAddr(IPv4Address(HOST), port_hint)],
            services=[SERVICE_ID],
            network_id=int(self.network),
            chain_id=self.chain_id,
            protocol_min=PROTOCOL_VERSION,
            protocol_max=PROTOCOL_VERSION,
            sequence=int(time.time()),
            now_unix=time.time(),
        )
        if 1 in self.kinds:
            self.send_discovery(disc.Hello(record))
            self.get_peers()
            self.send_discovery(disc.GetServices(()))
        if 3 in self.kinds:
            status = hsync.Status(tip_height=0, tip_hash=self.chain_id, anchor_height=0)
            self.send(3, hsync.TAG_STATUS, hsync.encode_header_sync(status))
        if 5 in self.kinds:
            empty = bs.Status(bs.EMPTY_SERVABLE_LOW, bs.EMPTY_SERVABLE_HIGH, bytes(32))
            self.send(5, bs.TAG_STATUS, bs.encode_block_sync(empty))
        self.task = asyncio.get_running_loop().create_task(self.read_loop(reader))

    # ------------------------------------------------------------------ sending
    def send(self, sid: int, message_type: int, payload: bytes) -> None:
        if not self.up:
            return
        assert self.writer is not None
        frame = encode_frame(message_type, 0, payload, len(payload))
        self.writer.write(mux.encode_record(mux.RecordType.DATA, sid, frame))
        Counters.bump(self.counters.frames_out, f"{self.kinds[sid]}:{message_type}")

    def send_discovery(self, msg: disc.DiscoveryMessage) -> None:
        self.send(1, disc.DISCOVERY_MESSAGE_TYPE, disc.encode_discovery(msg))

    def get_peers(self) -> None:
        if self.get_peers_outstanding or 1 not in self.kinds:
            return
        self.get_peers_outstanding = True
        exclude = tuple(sorted({self.identity.node_id, self.peer_id}))
        self.send_discovery(disc.GetPeers(32, (), exclude))

    def tick(self) -> None:
        """The periodic work of a real peer: a keepalive PING and a discovery refresh."""
        if not self.up:
            return
        assert self.writer is not None
        self.nonce += 1
        self.writer.write(mux.encode_record(mux.RecordType.PING, 0, mux.encode_ping(self.nonce)))
        self.get_peers()

    # ------------------------------------------------------------------ receiving
    async def read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = mux.decode_record_header(await reader.readexactly(MUX_HEADER_BYTES))
                payload = await reader.readexactly(header.length) if header.length else b""
                if header.type is mux.RecordType.DATA:
                    self.on_data(header.stream_id, payload)
                elif header.type is mux.RecordType.CLOSE:
                    self.closed_reason = "peer:" + mux.decode_close(payload).reason
                    break
                elif header.type is mux.RecordType.FIN and header.stream_id in self.kinds:
                    assert self.writer is not None
                    self.writer.write(mux.encode_record(mux.RecordType.FIN, header.stream_id))
                elif header.type is mux.RecordType.RESET:
                    Counters.bump(self.counters.closes, f"reset:{header.stream_id}")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_reason = self.closed_reason or "eof"
        except Exception as exc:  # a codec error: our bug or the node's; count, never hang
            self.closed_reason = f"error:{type(exc).__name__}"
        finally:
            Counters.bump(self.counters.closes, (self.closed_reason or "?").split(":")[0])
            if self.writer is not None:
                self.writer.close()

    def on_data(self, sid: int, payload: bytes) -> None:
        decoder = self.decoders.get(sid)
        if decoder is None:
            return
        window = self.windows[sid]
        window.on_data(len(payload))
        frames = decoder.feed(payload)
        grant = window.on_consumed(len(payload))
        if grant and self.writer is not None:
            self.writer.write(
                mux.encode_record(mux.RecordType.CREDIT, sid, mux.encode_credit(grant))
            )
        kind = self.kinds[sid]
        for frame in frames:
            Counters.bump(self.counters.frames_in, f"{kind}:{frame.message_type}")
            if kind == 4:
                self.on_discovery(disc.decode_discovery(frame.payload))
            elif (
                kind == hsync.HEADER_SYNC_STREAM_KIND
                and frame.message_type == hsync.TAG_GET_HEADERS
            ):
                empty = hsync.Headers((), ())
                self.send(sid, hsync.TAG_HEADERS, hsync.encode_header_sync(empty))
            elif kind == bs.BLOCK_SYNC_STREAM_KIND and frame.message_type == bs.TAG_GET_BLOCKS:
                req = bs.decode_block_sync(frame.payload)
                assert isinstance(req, bs.GetBlocks)
                gone = bs.RangeUnavailable(req.start_height, req.count)
                self.send(sid, bs.TAG_RANGE_UNAVAILABLE, bs.encode_block_sync(gone))

    def on_discovery(self, msg: disc.DiscoveryMessage) -> None:
        if isinstance(msg, disc.GetPeers):
            self.send_discovery(disc.Peers(()))
        elif isinstance(msg, disc.GetServices):
            summary = disc.ServiceSummary(SERVICE_ID, 0, 0, b"")
            expires = int(time.time()) + 30
            self.send_discovery(disc.Services(self.identity.node_id, expires, (summary,)))
        elif isinstance(msg, disc.Peers):
            self.get_peers_outstanding = False

    async def close(self) -> None:
        if self.writer is not None and self.closed_reason is None:
            self.closed_reason = "local"
            with contextlib.suppress(Exception):
                info = mux.encode_close(mux.CloseInfo(0, "loadgen_stop"))
                self.writer.write(mux.encode_record(mux.RecordType.CLOSE, 0, info))
                self.writer.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


# ---------------------------------------------------------------------- raw baseline
class RawPeer:
    """A bare TCP connection that sends nothing: the floor of the memory baseline."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None

    @property
    def up(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self, host: str, port: int) -> None:
        _reader, self.writer = await asyncio.open_connection(host, port)

    def tick(self) -> None:
        pass

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def raw_server() -> None:
    """Accept connections and read them until they close; print the port, run until EOF."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(hold, HOST, 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    emit({"event": "listening", "port": port, "pid": os.getpid()})
    await wait_stdin_closed()
    server.close()


# ---------------------------------------------------------------------- the run
def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_stdin_closed() -> None:
    reader = await stdin_lines()
    while await reader.readline():
        pass


async def dial_all(
    peers: list[Peer] | list[RawPeer], host: str, port: int, concurrency: int, counters: Counters
) -> float:
    """Dial every peer, ``concurrency`` at a time; returns the wall time it took."""
    gate = asyncio.Semaphore(concurrency)

    async def one(peer: Peer | RawPeer) -> None:
        async with gate:
            try:
                async with asyncio.timeout(DIAL_TIMEOUT):
                    await peer.connect(host, port)
            except (OSError, TimeoutError, hs.HandshakeFailure) as exc:
                reason = exc.reason if isinstance(exc, hs.HandshakeFailure) else type(exc).__name__
                Counters.bump(counters.dial_errors, reason)

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in peers))
    return time.perf_counter() - started


async def ticker(peers: list[Peer] | list[RawPeer]) -> None:
    """Each peer's periodic work, spread evenly: a tenth of them every second."""
    slot = 0
    slots = max(1, int(PING_SECS))
    while True:
        await asyncio.sleep(PING_SECS / slots)
        for peer in peers[slot::slots]:
            peer.tick()
        slot = (slot + 1) % slots


async def run(args: argparse.Namespace) -> None:
    raise_fd_limit()
    if args.raw_server:
        await raw_server()
        return
    host, _, port_text = args.target.rpartition(":")
    port = int(port_text)
    counters = Counters()
    network = NetworkId[args.network.upper()]
    peers: list[Peer] | list[RawPeer]
    if args.raw:
        peers = [RawPeer() for _ in range(args.peers)]
    else:
        peers = [Peer(identity_for(args.seed, i), network, counters) for i in range(args.peers)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    elapsed = await dial_all(peers, host, port, args.concurrency, counters)
    up = sum(p.up for p in peers)
    emit(
        {
            "event": "connected",
            "peers": args.peers,
            "up": up,
            "seconds": elapsed,
            "handshakes_per_s": up / elapsed if elapsed > 0 else 0.0,
            "dial_errors": counters.dial_errors,
        }
    )
    tick = loop.create_task(ticker(peers))
    commands = await stdin_lines()

    async def serve_commands() -> None:
        while await commands.readline():
            emit(
                {
                    "event": "status",
                    "up": sum(p.up for p in peers),
                    "frames_in": counters.frames_in,
                    "frames_out": counters.frames_out,
                    "closes": counters.closes,
                }
            )
        stop.set()

    reader_task = loop.create_task(serve_commands())
    await stop.wait()
    tick.cancel()
    reader_task.cancel()
    await asyncio.gather(*(p.close() for p in peers))


def raise_fd_limit() -> None:
    """Every connection is a descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--target", default="", metavar="HOST:PORT", help="the node to load")
    parser.add_argument("--peers", type=int, default=1000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=16, metavar="C", help="dials at once")
    parser.add_argument("--network", default="regtest", choices=["regtest", "testnet", "mainnet"])
    parser.add_argument("--seed", type=int, default=1, help="seed of the peers' keys")
    parser.add_argument("--raw", action="store_true", help="bare TCP connections, no protocol")
    parser.add_argument("--raw-server", action="store_true", help="run the bare TCP server")
    args = parser.parse_args(argv)
    if not args.raw_server and not args.target:
        parser.error("--target is required")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
