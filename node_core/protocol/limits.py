"""Protocol constants, caps and defaults in one place.

Values follow the Zakura reference (``handshake.rs``, ``handler.rs`` and the connections spec)
unless they are too large for a laptop or wrong for a loopback testnet; every such deviation
is listed in ``docs/PROTOCOL.md`` with its reason.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

KIB = 1024
MIB = 1024 * KIB

# --- handshake -----------------------------------------------------------------------------
CONTROL_HELLO_MAGIC = b"ZAKCTRL\x00"
CONTROL_ACK_MAGIC = b"ZAKACK\x00\x00"
CONTROL_VERSION = 1
PROTOCOL_VERSION = 1
#: Every control message (hello, ack, confirm, close) is at most this large.
MAX_CONTROL_PAYLOAD_BYTES = 16 * KIB
#: The whole handshake must finish within this many seconds.
CONTROL_TIMEOUT_SECS = 10.0
NODE_ID_BYTES = 32
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
TRANSCRIPT_HASH_BYTES = 32
TRANSCRIPT_PERSON = b"zakura-ctrl-v1"
RESPONDER_SIGNING_DOMAIN = b"zakura-ctrl-responder-v1"
INITIATOR_SIGNING_DOMAIN = b"zakura-ctrl-initiator-v1"


class NetworkId(IntEnum):
    """Network ids as carried on the wire (u32)."""

    MAINNET = 1
    TESTNET = 2
    REGTEST = 3
    CONFIGURED = 4


NETWORK_LABELS = {
    NetworkId.MAINNET: "mainnet",
    NetworkId.TESTNET: "testnet",
    NetworkId.REGTEST: "regtest",
    NetworkId.CONFIGURED: "configured",
}


class Capability(IntFlag):
    """Capability bits: one bit per service stream a node can run."""

    NONE = 0
    LEGACY_GOSSIP = 1 << 0
    HEADER_SYNC = 1 << 1
    DISCOVERY = 1 << 2
    BLOCK_SYNC = 1 << 3


class StreamKind(IntEnum):
    """Stream kinds route a stream to its service."""

    DISCOVERY = 4
    HEADER_SYNC = 5
    BLOCK_SYNC = 6


STREAM_KIND_LABELS = {4: "discovery", 5: "header_sync", 6: "block_sync"}

# --- limits a node advertises in its hello (accepted = min of both sides) ------------------
LOCAL_MAX_FRAME_BYTES = 4 * MIB + 8
LOCAL_MAX_MESSAGE_BYTES = 4 * MIB
LOCAL_MAX_OPEN_STREAMS = 1024
LOCAL_MAX_INBOUND_QUEUE_DEPTH = 4096
#: Reference: 600 s local maximum; the QUIC idle timeout it rides on is 150 s.
DEFAULT_IDLE_TIMEOUT_MILLIS = 150_000
LOCAL_MAX_IDLE_TIMEOUT_MILLIS = 600_000
#: Smallest limits a node accepts: below these no service could send its largest message
#: (discovery needs 16 KiB) and a tiny idle timeout would turn keepalive into a ping flood.
MIN_MAX_MESSAGE_BYTES = 16 * KIB
MIN_MAX_FRAME_BYTES = MIN_MAX_MESSAGE_BYTES + 8
MIN_IDLE_TIMEOUT_MILLIS = 1_000

# --- multiplexer ---------------------------------------------------------------------------
STREAM_PRELUDE_MAGIC = b"ZKST"
MUX_HEADER_BYTES = 9
#: A mux record's payload is at most this large (checked before reading it).
MAX_MUX_RECORD_BYTES = 256 * KIB
#: Senders cut stream data into DATA records of at most this many bytes so that one
#: large message cannot monopolise the connection.
MUX_DATA_CHUNK_BYTES = 128 * KIB
#: Smallest per-stream receive window; a stream's window is at least twice its frame cap
#: so one maximal frame can always be in flight while the previous one is being read.
MIN_STREAM_WINDOW_BYTES = 256 * KIB
MAX_CLOSE_REASON_BYTES = 256

# --- frames --------------------------------------------------------------------------------
FRAME_HEADER_BYTES = 8


class CloseCode(IntEnum):
    """Connection and stream close codes (the first close reason wins and is reported)."""

    NEUTRAL = 0
    RESOURCE = 1
    BAD_PRELUDE = 2
    RATE_LIMIT = 3
    OVERSIZE = 4
    UNKNOWN_STREAM = 5


# --- transport defaults (see docs/PROTOCOL.md "Limits and defaults") ------------------------
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_PENDING_HANDSHAKES = 16
#: Reference spec default is 3, but every testnet peer shares 127.0.0.1.
DEFAULT_MAX_CONNECTIONS_PER_IP = 32
DEFAULT_STREAM_OPEN_RATE = 32.0
DEFAULT_MESSAGE_RATE = 2048.0
DEFAULT_DUPLICATE_EVICT_MIN_AGE_SECS = 30.0
DEFAULT_KEEPALIVE_SECS = 10.0
STREAM_WORKER_DRAIN_SECS = 1.0
