"""The snapshot document, built and encoded at most once per ``max_age`` for every reader.

Why: every remote console (``zakura attach``, each SSH session's console, each browser tab)
polls ``GET /api/v1/snapshot`` at its refresh rate, and every stream client gets one per
interval. Building a snapshot walks every peer and routine on the node's event loop; with 8
consoles at 4 Hz that was 32 builds a second, each one a pause for every routine. One build per
``max_age`` (100 ms, below any console's refresh interval) serves them all, encoded once both
as the plain document and as the stream's ``snapshot`` message. A write through the API
invalidates it, so whoever acted sees the effect in the next snapshot it asks for.

The brief document (``?peers=brief``, what a console polls: each peer cut to what its Peers row
draws, with byte rates the cache's :class:`~node_core.observe.peer_rates.PeerRates` samples
once a second) is cached beside it the same way; ``&detail=LABEL`` adds that one peer's full
entry to the cached bytes per request (one peer's build, not the document's).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from node_core.observe.gcpause import gc_paused
from node_core.observe.peer_rates import PeerRates
from node_core.observe.snapshot import SnapshotSource, build_brief_snapshot, peer_row

__all__ = ["SNAPSHOT_MAX_AGE", "SnapshotCache"]


class Snapshots(SnapshotSource, Protocol):
    """What the cache reads of a node (a :class:`~node_core.node.Node`)."""

    def snapshot(self) -> dict[str, Any]: ...


#: How the brief document's bytes end: ``detail`` is its last key, spliced per request.
_NO_DETAIL = b'"detail":null}'


#: Seconds a built snapshot is served before the next request rebuilds it.
SNAPSHOT_MAX_AGE = 0.1


class SnapshotCache:
    """The encoded snapshot of one node, rebuilt at most once per ``max_age`` whoever asks."""

    def __init__(self, node: Snapshots, max_age: float = SNAPSHOT_MAX_AGE) -> None:
        self.node = node
        self.max_age = max_age
        self._built = -1.0
        self._plain = b""
        self._message = b""
        self._brief_built = -1.0
        self._brief = b""
        #: The brief document's byte rates, sampled across builds (peer_rates.py).
        self.rates = PeerRates()
        #: How many times a snapshot was built (what the cache saves shows against requests).
        self.builds = 0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._built >= self.max_age:
            self._plain = orjson.dumps(self.node.snapshot())
            self._message = b'{"type":"snapshot","snapshot":' + self._plain + b"}"
            self._built = now
            self.builds += 1

    def plain(self) -> bytes:
        """The snapshot document as JSON (``GET /api/v1/snapshot``)."""
        self._refresh()
        return self._plain

    def encoded(self) -> bytes:
        """The stream's ``snapshot`` message."""
        self._refresh()
        return self._message

    def brief(self, detail: str | None = None) -> bytes:
        """The brief document as JSON (``GET /api/v1/snapshot?peers=brief[&detail=LABEL]``)."""
        now = time.monotonic()
        if now - self._brief_built >= self.max_age:
            with gc_paused():  # as the node's own build (gcpause.py)
                self._brief = orjson.dumps(build_brief_snapshot(self.node, rates=self.rates))
            if not self._brief.endswith(_NO_DETAIL):
                raise ValueError("the brief document must end with its null detail")
            self._brief_built = now
            self.builds += 1
        if detail is None:
            return self._brief
        entry = orjson.dumps(peer_row(self.node, detail))
        return self._brief[: -len(_NO_DETAIL)] + b'"detail":' + entry + b"}"

    def invalidate(self) -> None:
        """Build afresh on the next request (after a write changed the node)."""
        self._built = -1.0
        self._brief_built = -1.0
