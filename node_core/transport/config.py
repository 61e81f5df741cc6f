"""Transport configuration: every knob with the default an operator gets and why."""

from __future__ import annotations

from dataclasses import dataclass

from node_core.protocol import limits as L
from node_core.protocol.handshake import DEFAULT_LIMITS, Limits


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Admission, rate and timeout settings for one node's transport.

    Defaults suit a loopback testnet (all peers share 127.0.0.1, hence the per-IP cap of 32
    instead of the reference's 3); ``docs/PROTOCOL.md`` lists them next to the reference values.
    """

    network_id: int = L.NetworkId.REGTEST
    chain_id: bytes = bytes(32)
    limits: Limits = DEFAULT_LIMITS
    max_connections: int = L.DEFAULT_MAX_CONNECTIONS
    max_pending_handshakes: int = L.DEFAULT_MAX_PENDING_HANDSHAKES
    max_connections_per_ip: int = L.DEFAULT_MAX_CONNECTIONS_PER_IP
    handshake_timeout: float = L.CONTROL_TIMEOUT_SECS
    stream_open_rate: float = L.DEFAULT_STREAM_OPEN_RATE
    message_rate: float = L.DEFAULT_MESSAGE_RATE
    keepalive_interval: float = L.DEFAULT_KEEPALIVE_SECS
    duplicate_evict_min_age: float = L.DEFAULT_DUPLICATE_EVICT_MIN_AGE_SECS
    drain_timeout: float = L.STREAM_WORKER_DRAIN_SECS
    dial_timeout: float = 5.0
    #: Seed of the link-fault jitter (``links.LinkTable.rng``). None: derived from the node
    #: id, so each node draws its own sequence and the same identity draws the same one.
    link_seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.chain_id) != 32:
            raise ValueError("chain_id must be 32 bytes")
        for name in ("max_connections", "max_pending_handshakes", "max_connections_per_ip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.stream_open_rate <= 0 or self.message_rate <= 0:
            raise ValueError("rates must be positive")
        if not self.limits.usable():
            raise ValueError("limits are below the protocol minimums (see protocol/limits.py)")
        if self.keepalive_interval * 1000 >= self.limits.idle_timeout_millis:
            raise ValueError("keepalive interval must be shorter than the idle timeout")
