"""The console's one addition to the control model (:mod:`node_core.control`).

The action kinds, their bounds, the typed-input parsers and the read-only rule live in the
node's control model, shared with the HTTP API and SSH commands, and the console imports them
from there. This module holds only :class:`ActionPolicy`, which answers "may this console act
at all" for keys, footers and palette entries before a request is even built (k9s's read-only
bugs came from actions that skipped such a check), and :class:`ActionRefused`, what it raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from node_core.control import LOCAL_OPERATOR, ControlPolicy, Principal

__all__ = ["ActionPolicy", "ActionRefused"]


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
