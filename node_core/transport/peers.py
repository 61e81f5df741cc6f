"""The registry of live connections: duplicates, per-IP counts, the generation guard.

Invariants (reference §1.8):
- At most one registered connection per peer id. When a second one authenticates, the one
  with the lexicographically smaller transcript hash survives (the incumbent on a tie), so both
  ends of a simultaneous open keep the same connection.
- A losing incumbent registered longer than ``evict_min_age`` ago is also closed (a restarted
  peer reclaims its slot at once instead of waiting for the idle timeout).
- Deregistering a superseded connection is a no-op (generation guard by ``conn_id``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from node_core.transport.connection import Connection


class Registration(StrEnum):
    REGISTERED = "registered"
    DUPLICATE = "duplicate"  # the newcomer lost and must close
    UPGRADED = "upgraded"  # the newcomer replaced the incumbent


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    result: Registration
    incumbent: Connection | None = None
    evict_stale_incumbent: bool = False


class PeerTable:
    """Registered connections by peer id, plus per-IP accounting."""

    def __init__(self) -> None:
        self.by_id: dict[bytes, Connection] = {}
        self.per_ip: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, node_id: bytes) -> Connection | None:
        return self.by_id.get(node_id)

    def connections(self) -> list[Connection]:
        return list(self.by_id.values())

    def register(self, conn: Connection, evict_min_age: float) -> RegisterOutcome:
        node_id = conn.peer.node_id
        incumbent = self.by_id.get(node_id)
        if incumbent is not None and not incumbent.closed:
            if incumbent.transcript_hash <= conn.transcript_hash:
                stale = incumbent.age >= evict_min_age
                return RegisterOutcome(Registration.DUPLICATE, incumbent, stale)
            self._remove(incumbent)
            self._add(conn)
            return RegisterOutcome(Registration.UPGRADED, incumbent)
        if incumbent is not None:
            self._remove(incumbent)
        self._add(conn)
        return RegisterOutcome(Registration.REGISTERED)

    def deregister(self, conn: Connection) -> bool:
        """Remove ``conn`` if it is still the registered connection for its peer."""
        if self.by_id.get(conn.peer.node_id) is conn:
            self._remove(conn)
            return True
        return False

    def _add(self, conn: Connection) -> None:
        self.by_id[conn.peer.node_id] = conn
        self.per_ip[_ip(conn.peer.addr)] += 1

    def _remove(self, conn: Connection) -> None:
        del self.by_id[conn.peer.node_id]
        ip = _ip(conn.peer.addr)
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]


def _ip(addr: str) -> str:
    host, _, _ = addr.rpartition(":")
    return host.strip("[]")
