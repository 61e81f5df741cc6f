"""The one place that decides whether the console may act on a node.

Every key, palette command and client call that changes node state asks this policy first. A
read-only console refuses them all here, so no path can bypass it (k9s's read-only bugs came
from actions that skipped the check).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Actions the console can ask for; the policy and the clients know no others.
ACTIONS = ("disconnect", "panic", "park", "stall")

#: Bounds and default of a header-sync stall (``s``), in seconds. The upper bound keeps a
#: typo from wedging a peer's header sync for hours; the node re-assigns its ranges anyway.
STALL_MIN_S = 1.0
STALL_MAX_S = 600.0
STALL_DEFAULT_S = 30.0


def parse_stall_seconds(text: str) -> float:
    """The operator's stall time, validated; the ``ValueError`` message is shown as is."""
    try:
        seconds = float(text.strip())
    except ValueError:
        raise ValueError(
            f"stall time must be a number of seconds from {STALL_MIN_S:g} to {STALL_MAX_S:g}"
            f" (got {text.strip()[:20]!r})"
        ) from None
    if not STALL_MIN_S <= seconds <= STALL_MAX_S:  # also refuses nan and inf
        raise ValueError(
            f"stall time must be from {STALL_MIN_S:g} to {STALL_MAX_S:g} seconds (got {seconds:g})"
        )
    return seconds


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
