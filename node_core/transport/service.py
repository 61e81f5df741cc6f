"""The service registry: which stream kinds this node runs and who handles them.

Three namespaces never mix (reference §1.5): the stream *kind* routes a stream, the
*capability* bit authorises it, the service *name* labels it for humans and traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from node_core.protocol.mux_state import KindRules

if TYPE_CHECKING:
    from node_core.transport.connection import Connection
    from node_core.transport.stream import Stream


class Service(KindRules, Protocol):
    """A per-peer ordered service. ``add_peer`` launches its supervised routine.

    Its name, kind, version, capability, frame cap and message rate (``KindRules``) are what
    the stream rules of ``node_core/protocol/mux_state.py`` admit a stream by.
    """

    def add_peer(self, conn: Connection, stream: Stream) -> None: ...

    def remove_peer(self, conn: Connection) -> None: ...


class RegistryError(ValueError):
    pass


class ServiceRegistry:
    """Services in registration order; validated once at start-up."""

    def __init__(self, services: Sequence[Service]) -> None:
        kinds: set[int] = set()
        for svc in services:
            cap = svc.capability
            if cap <= 0 or cap & (cap - 1):
                raise RegistryError(f"{svc.name}: capability {cap:#x} is not exactly one bit")
            if svc.kind in kinds:
                raise RegistryError(f"{svc.name}: stream kind {svc.kind} declared twice")
            kinds.add(svc.kind)
        self.services = tuple(services)

    @property
    def supported_capabilities(self) -> int:
        mask = 0
        for svc in self.services:
            mask |= svc.capability
        return mask

    def lookup(self, kind: int) -> Service | None:
        for svc in self.services:
            if svc.kind == kind:
                return svc
        return None

    def for_negotiated(self, mask: int) -> list[Service]:
        return [svc for svc in self.services if svc.capability & mask]
