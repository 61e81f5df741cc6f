"""The console's view of the control model (:mod:`node_core.control`), where actions are decided.

The bounds, the typed-input parsers and the read-only rule live in the node's control model,
shared with the HTTP API and SSH commands, so they are written once. This module keeps the
names the console's screens use and the one console-side helper: :class:`ActionPolicy`, which
answers "may this console act at all" for keys, footers and palette entries before a request
is even built (k9s's read-only bugs came from actions that skipped such a check).
"""

from __future__ import annotations

from dataclasses import dataclass

from node_core.control import (
    ACTIONS,
    LOCAL_OPERATOR,
    STALL_DEFAULT_S,
    STALL_MAX_S,
    STALL_MIN_S,
    STALL_SERVICES,
    THROTTLE_DEFAULT_KIB,
    THROTTLE_MAX_KIB,
    ControlPolicy,
    Principal,
    parse_stall_seconds,
    parse_throttle_kib,
)

__all__ = [
    "ACTIONS",
    "STALL_DEFAULT_S",
    "STALL_MAX_S",
    "STALL_MIN_S",
    "STALL_SERVICES",
    "THROTTLE_DEFAULT_KIB",
    "THROTTLE_MAX_KIB",
    "ActionPolicy",
    "ActionRefused",
    "parse_stall_seconds",
    "parse_throttle_kib",
]


class ActionRefused(Exception):
    """The policy forbids the action; the message is shown to the operator as is."""


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    """The control model's policy for this console's principal (its own operator, or the
    role of the token it attached with)."""

    read_only: bool = False
    principal: Principal = LOCAL_OPERATOR

    @property
    def control(self) -> ControlPolicy:
        return ControlPolicy(read_only=self.read_only)

    def allows(self, kind: str) -> bool:
        return self.control.allows(kind, self.principal)

    def check(self, kind: str) -> None:
        refused = self.control.refuse(kind, self.principal)
        if refused is not None:
            raise ActionRefused(refused.message)
