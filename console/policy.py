"""The one place that decides whether the console may act on a node.

Every key, palette command and client call that changes node state asks this policy first. A
read-only console refuses them all here, so no path can bypass it (k9s's read-only bugs came
from actions that skipped the check).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Actions the console can ask for; the policy and the clients know no others.
ACTIONS = ("disconnect", "panic", "park", "stall", "throttle")

#: The routines ``s`` can stall (the node's ``faults.stall`` knows these two).
STALL_SERVICES = ("header_sync", "block_sync")

#: Bounds and default of a stall (``s``), in seconds. The upper bound keeps a typo from
#: wedging a peer's sync for hours (the node refuses more than 600 s anyway).
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


#: Default and upper bound of a bandwidth throttle (``w``), in KiB/s; 0 lifts the throttle.
#: 1 GiB/s is far above any link the console drives, so the bound only catches typos.
THROTTLE_DEFAULT_KIB = 64.0
THROTTLE_MAX_KIB = 1_048_576.0


def parse_throttle_kib(text: str) -> float:
    """The operator's read rate in KiB/s (0 lifts the throttle), validated; the
    ``ValueError`` message is shown as is."""
    try:
        kib = float(text.strip())
    except ValueError:
        raise ValueError(
            f"rate must be a number of KiB/s from 0 to {THROTTLE_MAX_KIB:,.0f}"
            f" (0 lifts the throttle; got {text.strip()[:20]!r})"
        ) from None
    if not 0 <= kib <= THROTTLE_MAX_KIB:  # also refuses nan and inf
        raise ValueError(
            f"rate must be from 0 to {THROTTLE_MAX_KIB:,.0f} KiB/s"
            f" (0 lifts the throttle; got {kib:g})"
        )
    return kib


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
