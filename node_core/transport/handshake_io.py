"""Runs the control handshake over a fresh TCP connection (the I/O half of
:mod:`node_core.protocol.handshake`). Bounded in time by the caller and in size by the codec."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from node_core.identity import Identity, verify
from node_core.protocol import handshake as hs
from node_core.protocol import mux as mux_codec
from node_core.protocol.errors import CodecError
from node_core.protocol.limits import CONTROL_VERSION, CloseCode


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    peer_node_id: bytes
    peer_listen_port: int
    negotiated: hs.Negotiated
    transcript_hash: bytes


async def read_control(reader: asyncio.StreamReader) -> hs.ControlMessage:
    try:
        prefix = await reader.readexactly(4)
        n = hs.control_length(prefix)
        payload = await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise hs.HandshakeFailure("eof", "peer closed during the handshake") from exc
    except CodecError as exc:
        raise hs.HandshakeFailure("malformed", str(exc), punitive=True) from exc
    return hs.decode_or_fail(payload)


def write_control(writer: asyncio.StreamWriter, msg: hs.ControlMessage) -> None:
    writer.write(hs.frame_control(hs.encode_control(msg)))


def send_close(
    writer: asyncio.StreamWriter, reason: str, code: int = CloseCode.NEUTRAL, *, mux: bool = False
) -> None:
    """Best effort: tell the peer why before closing the socket (as a control Close, or as a
    multiplexer CLOSE record once the peer has left the handshake)."""
    with contextlib.suppress(Exception):
        if mux:
            info = mux_codec.encode_close(mux_codec.CloseInfo(code, reason[:200] or "refused"))
            writer.write(mux_codec.encode_record(mux_codec.RecordType.CLOSE, 0, info))
        else:
            write_control(writer, hs.Close(code, reason[:200] or "refused"))


def _hello(identity: Identity, local: hs.LocalParams) -> hs.Hello:
    return hs.Hello(
        control_version=CONTROL_VERSION,
        protocol_min=local.protocol_min,
        protocol_max=local.protocol_max,
        network_id=local.network_id,
        chain_id=local.chain_id,
        node_id=identity.node_id,
        nonce=os.urandom(32),
        capabilities=local.capabilities,
        limits=local.limits,
        listen_port=local.listen_port,
    )


async def initiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    local: hs.LocalParams,
    expected_node_id: bytes | None = None,
    admit: Callable[[bytes], str | None] | None = None,
) -> HandshakeResult:
    """Initiator side: Hello, then Ack, then Confirm.

    ``admit(node_id)`` may refuse the responder once its signed Ack has identified it (a
    partitioned node dialed by address); the refusal goes back in a Close instead of the
    Confirm, so the responder never registers us.
    """
    hello = _hello(identity, local)
    write_control(writer, hello)
    await writer.drain()
    ack = await read_control(reader)
    hs.expect(ack, hs.Ack)
    assert isinstance(ack, hs.Ack)
    negotiated = hs.check_ack(local, hello, ack, verify, expected_node_id)
    refusal = admit(ack.node_id) if admit is not None else None
    if refusal is not None:
        raise hs.HandshakeFailure(refusal, "refused after the Ack", close_code=CloseCode.RESOURCE)
    th = hs.transcript_hash(hs.encode_control(hello), hs.ack_transcript_body(ack))
    write_control(writer, hs.Confirm(identity.sign(hs.initiator_signing_message(th))))
    await writer.drain()
    return HandshakeResult(ack.node_id, ack.listen_port, negotiated, th)


async def respond(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    identity: Identity,
    local: hs.LocalParams,
    admit: Callable[[bytes], str | None] | None = None,
) -> HandshakeResult:
    """Responder side: read Hello, answer Ack, verify Confirm.

    ``admit(claimed_node_id)`` may refuse the peer before we answer (the per-IP precheck); its
    reason goes back in a Close with code 1. A failure after the Ack (the initiator already
    considers itself connected) is sent as a multiplexer CLOSE record instead, the only thing
    the initiator reads at that point.
    """
    hello = await read_control(reader)
    hs.expect(hello, hs.Hello)
    assert isinstance(hello, hs.Hello)
    negotiated = hs.negotiate(local, hello)
    refusal = admit(hello.node_id) if admit is not None else None
    if refusal is not None:
        raise hs.HandshakeFailure(refusal, "admission refused", close_code=CloseCode.RESOURCE)
    unsigned = hs.Ack(
        control_version=CONTROL_VERSION,
        selected_protocol=negotiated.protocol,
        network_id=local.network_id,
        chain_id=local.chain_id,
        node_id=identity.node_id,
        nonce=os.urandom(32),
        echo_nonce=hello.nonce,
        accepted_capabilities=negotiated.capabilities,
        accepted_limits=negotiated.limits,
        listen_port=local.listen_port,
        signature=bytes(64),
    )
    th = hs.transcript_hash(hs.encode_control(hello), hs.ack_transcript_body(unsigned))
    ack = replace(unsigned, signature=identity.sign(hs.responder_signing_message(th)))
    write_control(writer, ack)
    await writer.drain()
    try:
        confirm = await read_control(reader)
        hs.expect(confirm, hs.Confirm)
        assert isinstance(confirm, hs.Confirm)
        hs.check_confirm(hello, ack, confirm, verify)
    except hs.HandshakeFailure as exc:
        exc.after_ack = True
        raise
    return HandshakeResult(hello.node_id, hello.listen_port, negotiated, th)
