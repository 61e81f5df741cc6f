"""The one place that decides whether the console may act on a node.

Every key, palette command and client call that changes node state asks this policy first. A
read-only console refuses them all here, so no path can bypass it (k9s's read-only bugs came
from actions that skipped the check).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Actions the console can ask for; the policy and the clients know no others.
ACTIONS = ("disconnect", "panic")


class ActionRefused(Exception):
    """The policy forbids the action; the message is shown to the operator as is."""


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    read_only: bool = False

    def allows(self, kind: str) -> bool:
        return not self.read_only and kind in ACTIONS

    def check(self, kind: str) -> None:
        if self.read_only:
            raise ActionRefused(f"read-only console: {kind} is disabled (started with --read-only)")
        if kind not in ACTIONS:
            raise ActionRefused(f"unknown action {kind!r}")
