"""Header-sync (stream 5) node-side state: the shared range queue the peer routines pull from.

The wire codec lives in :mod:`node_core.protocol.header_sync`; this package holds the pure,
synchronous scheduling state the reactor and the per-peer routines share.
"""

from __future__ import annotations

from node_core.header_sync.range_queue import (
    FANOUT,
    HeaderWork,
    PeerId,
    RangeKey,
    RangeRequest,
    ReturnReason,
    SharedHeaderRangeQueue,
)

__all__ = [
    "FANOUT",
    "HeaderWork",
    "PeerId",
    "RangeKey",
    "RangeRequest",
    "ReturnReason",
    "SharedHeaderRangeQueue",
]
