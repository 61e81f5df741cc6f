"""The one control model: what anyone may ask a node to do, who may ask, and how it is done.

The console's keys, the HTTP write routes and the SSH commands all build an :class:`Action`
and call :func:`apply`; nothing else reaches the fault injector. So the bounds of an action
(a stall of at most 600 s, a throttle rate that is a number), the roles (a viewer may only
look) and ``--read-only`` are decided here once, and every surface refuses the same requests
with the same words (docs/ARCHITECTURE.md, "The control model").

Invariants:

- An :class:`Action` (a fault on one connected peer) or a :class:`LinkAction` (a link fault,
  on remote node ids) is valid once built: its constructor checks every field and raises
  :class:`ActionInvalid` naming the field, so a refused request never reaches the node.
- :func:`apply` checks the policy before anything else and returns an :class:`ActionResult`
  for every outcome, refusals included; a refused or failed request changes nothing.
- Every applied action is journaled by the fault injector (``fault/injected`` then
  ``fault/observed``) with the principal's name, role and remote address.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from node_core.faults import (
    FaultError,
    FaultInjector,
    FaultInvalid,
    FaultOutcome,
    FaultsDisabled,
    LinkOutcome,
    NotParked,
    RoutineNotRunning,
    UnknownPeer,
)
from node_core.transport.links import (
    MAX_DELAY_MS,
    MAX_JITTER_MS,
    MAX_KIB_PER_S,
    MIN_KIB_PER_S,
)

__all__ = [
    "ACTIONS",
    "LINK_ACTIONS",
    "LOCAL_OPERATOR",
    "MAX_LINK_NODES",
    "PANIC_SERVICES",
    "PARK_SERVICES",
    "STALL_DEFAULT_S",
    "STALL_MAX_S",
    "STALL_MIN_S",
    "STALL_SERVICES",
    "THROTTLE_DEFAULT_KIB",
    "THROTTLE_MAX_KIB",
    "Action",
    "ActionInvalid",
    "ActionKind",
    "ActionResult",
    "ControlPolicy",
    "Controlled",
    "LinkAction",
    "LinkKind",
    "Principal",
    "Refusal",
    "Role",
    "apply",
    "parse_stall_seconds",
    "parse_throttle_kib",
]


class ActionKind(StrEnum):
    """Every action a node takes from outside; the value is the name on every surface."""

    DISCONNECT = "disconnect"
    PANIC = "panic"
    PARK = "park"
    UNPARK = "unpark"
    STALL = "stall"
    THROTTLE = "throttle"


#: The action names, in the order keys and help list them.
ACTIONS: tuple[str, ...] = tuple(k.value for k in ActionKind)


class LinkKind(StrEnum):
    """Every link fault: on remote node ids, not on a connected peer's label (issue 12)."""

    PARTITION = "partition"
    DELAY = "delay"
    BANDWIDTH = "bandwidth"
    HEAL = "heal"


#: The link fault names (``POST /api/v1/links/{action}``). Not in :data:`ACTIONS`: those are
#: the console's keys on a selected peer.
LINK_ACTIONS: tuple[str, ...] = tuple(k.value for k in LinkKind)

#: Most node ids one link action names: a testnet has tens of nodes, so more is a mistake
#: (and a bound on what one request makes the node do).
MAX_LINK_NODES = 1024

#: The body keys each link action takes; any other key is refused, naming it.
LINK_FIELDS: dict[LinkKind, tuple[str, ...]] = {
    LinkKind.PARTITION: ("nodes",),
    LinkKind.DELAY: ("nodes", "ms", "jitter_ms"),
    LinkKind.BANDWIDTH: ("nodes", "kib_per_s"),
    LinkKind.HEAL: ("nodes",),
}

_NODE_HEX = re.compile(r"[0-9a-fA-F]{64}")

#: Routines a panic can target (one per ordered stream of a peer).
PANIC_SERVICES = ("discovery", "header_sync", "block_sync")
#: Services that can be parked, and so unparked (only header sync has never-drop commands).
PARK_SERVICES = ("header_sync",)
#: Routines a stall can target.
STALL_SERVICES = ("header_sync", "block_sync")

#: Bounds and default of a stall, in seconds. The upper bound keeps a typo from wedging a
#: peer's sync for hours.
STALL_MIN_S = 1.0
STALL_MAX_S = 600.0
STALL_DEFAULT_S = 30.0

#: Default and upper bound of a bandwidth throttle, in KiB/s; 0 lifts the throttle. 1 GiB/s is
#: far above any link a node here drives, so the bound only catches typos.
THROTTLE_DEFAULT_KIB = 64.0
THROTTLE_MAX_KIB = 1_048_576.0

#: Longest peer label accepted (labels are ``peer:`` + 16 hex; anything longer is not one).
MAX_LABEL = 64


class Role(StrEnum):
    """What a principal may do: a viewer reads, an operator reads and acts."""

    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: a token's name and role, or the local console; ``remote`` is its address."""

    name: str
    role: Role
    remote: str | None = None

    def journal_fields(self) -> dict[str, str | None]:
        return {"by": self.name, "role": self.role.value, "remote": self.remote}


#: The console in the node's own process: its operator is at the keyboard.
LOCAL_OPERATOR = Principal("console", Role.OPERATOR, "local")


class ActionInvalid(ValueError):
    """A field of an action is wrong; ``field`` names it, the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _number(field: str, value: object) -> float:
    # bool is an int in Python; "true" is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ActionInvalid(field, f"{field} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ActionInvalid(field, f"{field} must be a finite number")
    return number


@dataclass(frozen=True, slots=True)
class Action:
    """One request: ``kind`` on peer ``label``.

    ``service`` names the routine of a panic (required), a park, an unpark or a stall
    (default ``header_sync``); ``seconds`` is a stall's length (default 30); ``rate`` is a
    throttle's read rate in KiB/s, the unit operators type (None or 0 lifts the throttle).
    Fields an action does not use must be None.
    """

    #: A plain string is accepted and turned into its :class:`ActionKind` (or refused).
    kind: ActionKind | str
    label: str
    service: str | None = None
    seconds: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        try:
            kind = ActionKind(self.kind)
        except ValueError:
            raise ActionInvalid(
                "kind", f"unknown action {str(self.kind)[:40]!r}; one of: {', '.join(ACTIONS)}"
            ) from None
        object.__setattr__(self, "kind", kind)
        if not isinstance(self.label, str) or not 0 < len(self.label) <= MAX_LABEL:
            raise ActionInvalid("label", "label must be a peer label such as peer:0123abcd…")
        self._check_service(kind)
        self._check_numbers(kind)

    @property
    def action_kind(self) -> ActionKind:
        """``kind`` as the enum (the constructor already made it one)."""
        return ActionKind(self.kind)

    def _check_service(self, kind: ActionKind) -> None:
        allowed = {
            ActionKind.PANIC: PANIC_SERVICES,
            ActionKind.PARK: PARK_SERVICES,
            ActionKind.UNPARK: PARK_SERVICES,
            ActionKind.STALL: STALL_SERVICES,
        }.get(kind)
        if allowed is None:
            if self.service is not None:
                raise ActionInvalid("service", f"{kind} takes no service")
            return
        if self.service is None:
            if kind is ActionKind.PANIC:
                raise ActionInvalid("service", f"panic needs a service: {', '.join(allowed)}")
            return
        if self.service not in allowed:
            raise ActionInvalid(
                "service",
                f"{kind} service must be one of: {', '.join(allowed)}"
                f" (got {str(self.service)[:40]!r})",
            )

    def _check_numbers(self, kind: ActionKind) -> None:
        if self.seconds is not None:
            if kind is not ActionKind.STALL:
                raise ActionInvalid("seconds", f"{kind} takes no seconds")
            seconds = _number("seconds", self.seconds)
            if not STALL_MIN_S <= seconds <= STALL_MAX_S:
                raise ActionInvalid(
                    "seconds",
                    f"seconds must be from {STALL_MIN_S:g} to {STALL_MAX_S:g} (got {seconds:g})",
                )
        if self.rate is not None:
            if kind is not ActionKind.THROTTLE:
                raise ActionInvalid("rate", f"{kind} takes no rate")
            rate = _number("rate", self.rate)
            if not 0 <= rate <= THROTTLE_MAX_KIB:
                raise ActionInvalid(
                    "rate",
                    f"rate must be from 0 to {THROTTLE_MAX_KIB:,.0f} KiB/s"
                    f" (0 lifts the throttle; got {rate:g})",
                )

    @classmethod
    def from_fields(cls, kind: str, label: str, fields: Mapping[str, Any]) -> Action:
        """Build from a decoded JSON body: only ``service``, ``seconds``, ``rate`` are known.

        Raises:
            ActionInvalid: Naming the first wrong or unknown field.
        """
        unknown = sorted(set(fields) - {"service", "seconds", "rate"})
        if unknown:
            raise ActionInvalid(unknown[0], f"unknown field {unknown[0][:40]!r}")
        service = fields.get("service")
        if service is not None and not isinstance(service, str):
            raise ActionInvalid("service", "service must be a string")
        return cls(
            kind,
            label,
            service,
            fields.get("seconds"),
            fields.get("rate"),
        )

    @property
    def effective_service(self) -> str | None:
        if self.action_kind in (ActionKind.PARK, ActionKind.UNPARK, ActionKind.STALL):
            return self.service or "header_sync"
        return self.service

    def describe(self) -> str:
        """The action as one sentence, for confirmations and results."""
        kind, label = self.action_kind, self.label
        if kind is ActionKind.PANIC:
            return f"panic the {self.service} routine of {label}"
        if kind is ActionKind.PARK:
            return f"park the {self.effective_service} service of {label}"
        if kind is ActionKind.UNPARK:
            return f"unpark the {self.effective_service} service of {label}"
        if kind is ActionKind.STALL:
            seconds = STALL_DEFAULT_S if self.seconds is None else self.seconds
            return f"stall {self.effective_service} reads of {label} for {seconds:g} s"
        if kind is ActionKind.THROTTLE:
            if not self.rate:
                return f"lift the bandwidth throttle of {label}"
            return f"throttle reads from {label} to {self.rate:g} KiB/s"
        return f"{kind} {label}"


def _whole(field: str, value: object, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (200 and 200.0 alike), or :class:`ActionInvalid`."""
    number = _number(field, value)
    if not number.is_integer() or not low <= number <= high:
        raise ActionInvalid(field, f"{field} must be a whole number from {low:,} to {high:,}")
    return int(number)


@dataclass(frozen=True, slots=True)
class LinkAction:
    """One link fault: ``kind`` on the links to ``nodes`` (node ids, 32 bytes each).

    ``nodes`` is None only for a heal of every rule. ``ms`` (required) and ``jitter_ms``
    (default 0) belong to a delay, ``kib_per_s`` (required) to a bandwidth; fields a kind
    does not use must be None. Our own id is refused by the node, which alone knows it.
    """

    kind: LinkKind | str
    nodes: tuple[bytes, ...] | None = None
    ms: int | None = None
    jitter_ms: int | None = None
    kib_per_s: int | None = None

    def __post_init__(self) -> None:
        try:
            kind = LinkKind(self.kind)
        except ValueError:
            raise ActionInvalid(
                "kind",
                f"unknown link action {str(self.kind)[:40]!r}; one of: {', '.join(LINK_ACTIONS)}",
            ) from None
        object.__setattr__(self, "kind", kind)
        self._check_nodes(kind)
        delay, bandwidth = kind is LinkKind.DELAY, kind is LinkKind.BANDWIDTH
        if delay:
            if self.ms is None:
                raise ActionInvalid("ms", f"delay needs ms, from 0 to {MAX_DELAY_MS:,}")
            object.__setattr__(self, "ms", _whole("ms", self.ms, 0, MAX_DELAY_MS))
            jitter = 0 if self.jitter_ms is None else self.jitter_ms
            object.__setattr__(self, "jitter_ms", _whole("jitter_ms", jitter, 0, MAX_JITTER_MS))
        else:
            for name in ("ms", "jitter_ms"):
                if getattr(self, name) is not None:
                    raise ActionInvalid(name, f"{kind} takes no {name}")
        if bandwidth:
            if self.kib_per_s is None:
                raise ActionInvalid(
                    "kib_per_s", f"bandwidth needs kib_per_s, from 1 to {MAX_KIB_PER_S:,}"
                )
            kib = _whole("kib_per_s", self.kib_per_s, MIN_KIB_PER_S, MAX_KIB_PER_S)
            object.__setattr__(self, "kib_per_s", kib)
        elif self.kib_per_s is not None:
            raise ActionInvalid("kib_per_s", f"{kind} takes no kib_per_s")

    def _check_nodes(self, kind: LinkKind) -> None:
        nodes = self.nodes
        if nodes is None:
            if kind is not LinkKind.HEAL:
                raise ActionInvalid("nodes", f"{kind} needs nodes: a list of node ids")
            return
        if not isinstance(nodes, tuple | list) or not nodes:
            raise ActionInvalid("nodes", "nodes must be a non-empty list of node ids")
        if len(nodes) > MAX_LINK_NODES:
            raise ActionInvalid("nodes", f"at most {MAX_LINK_NODES} nodes (got {len(nodes)})")
        for i, node_id in enumerate(nodes):
            if not isinstance(node_id, bytes) or len(node_id) != 32:
                raise ActionInvalid("nodes", f"nodes[{i}] is not a 32-byte node id")
        object.__setattr__(self, "nodes", tuple(dict.fromkeys(nodes)))  # repeats once

    @property
    def link_kind(self) -> LinkKind:
        """``kind`` as the enum (the constructor already made it one)."""
        return LinkKind(self.kind)

    @classmethod
    def from_fields(cls, kind: str, fields: Mapping[str, Any]) -> LinkAction:
        """Build from a decoded JSON body: ``nodes`` as 64-hex strings, numbers as numbers.

        Raises:
            ActionInvalid: Naming the first wrong or unknown field.
        """
        try:
            link_kind = LinkKind(kind)
        except ValueError:
            raise ActionInvalid(
                "action",
                f"unknown link action {kind[:40]!r}; one of: {', '.join(LINK_ACTIONS)}",
            ) from None
        unknown = sorted(set(fields) - set(LINK_FIELDS[link_kind]))
        if unknown:
            raise ActionInvalid(unknown[0], f"unknown field {unknown[0][:40]!r} for {kind}")
        raw = fields.get("nodes")
        nodes: tuple[bytes, ...] | None = None
        if raw is not None or link_kind is not LinkKind.HEAL:  # heal: absent or null is all
            nodes = _parse_nodes(raw)
        return cls(
            link_kind, nodes, fields.get("ms"), fields.get("jitter_ms"), fields.get("kib_per_s")
        )

    def describe(self) -> str:
        """The action as one sentence, for results."""
        kind = self.link_kind
        who = "every node" if self.nodes is None else _count_nodes(len(self.nodes))
        if kind is LinkKind.PARTITION:
            return f"partition this node from {who}"
        if kind is LinkKind.DELAY:
            return f"delay what is sent to {who} by {self.ms} ms ± {self.jitter_ms} ms"
        if kind is LinkKind.BANDWIDTH:
            return f"pace what is sent to {who} at {self.kib_per_s} KiB/s"
        return f"heal the links to {who}"


def _count_nodes(n: int) -> str:
    return "1 node" if n == 1 else f"{n} nodes"


def _parse_nodes(raw: object) -> tuple[bytes, ...]:
    if not isinstance(raw, list) or not raw:
        raise ActionInvalid("nodes", "nodes must be a non-empty list of 64-hex node ids")
    if len(raw) > MAX_LINK_NODES:
        raise ActionInvalid("nodes", f"at most {MAX_LINK_NODES} nodes (got {len(raw)})")
    nodes = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not _NODE_HEX.fullmatch(item):
            shown = repr(item)[:40]
            raise ActionInvalid("nodes", f"nodes[{i}] must be a 64-hex node id (got {shown})")
        nodes.append(bytes.fromhex(item))
    return tuple(nodes)


class Refusal(StrEnum):
    """Why an action did nothing; each surface maps it (the API to an HTTP status)."""

    READ_ONLY = "read_only"
    ROLE = "role"
    FAULTS_DISABLED = "faults_disabled"
    INVALID = "invalid"
    UNKNOWN_PEER = "unknown_peer"
    NOT_RUNNING = "not_running"
    #: An unpark of a peer whose service is not parked.
    NOT_PARKED = "not_parked"
    NO_EFFECT = "no_effect"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened. ``effect`` is what the node was seen to do (from its journal);
    ``refusal`` (with ``field`` for an invalid one) says why nothing happened."""

    ok: bool
    message: str
    fault_id: int | None = None
    effect: str | None = None
    reason: str | None = None
    refusal: Refusal | None = None
    field: str | None = None
    #: What a done link action adds to its answer (``action``, ``nodes``, ``closed`` ...).
    details: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "fault_id": self.fault_id,
            "effect": self.effect,
            "reason": self.reason,
            "refusal": None if self.refusal is None else self.refusal.value,
            "field": self.field,
            **(self.details or {}),
        }


@dataclass(frozen=True, slots=True)
class ControlPolicy:
    """Whether a principal may act at all: ``read_only`` refuses every action to anyone."""

    read_only: bool = False

    def allows(self, kind: str, principal: Principal = LOCAL_OPERATOR) -> bool:
        return self.refuse(kind, principal) is None

    def refuse(self, kind: str, principal: Principal = LOCAL_OPERATOR) -> ActionResult | None:
        """None when allowed; otherwise the refusal to hand back, unchanged, to the caller."""
        if kind not in ACTIONS and kind not in LINK_ACTIONS:
            return ActionResult(
                False, f"unknown action {kind[:40]!r}", refusal=Refusal.INVALID, field="kind"
            )
        if self.read_only:
            return ActionResult(
                False,
                f"read-only console: {kind} is disabled (started with --read-only)",
                refusal=Refusal.READ_ONLY,
            )
        if principal.role is not Role.OPERATOR:
            return ActionResult(
                False,
                f"{principal.name} is a {principal.role.value}: {kind} needs an operator",
                refusal=Refusal.ROLE,
            )
        return None


def parse_stall_seconds(text: str) -> float:
    """An operator's typed stall time, validated; the ``ValueError`` message is shown as is."""
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


def parse_throttle_kib(text: str) -> float:
    """An operator's typed read rate in KiB/s (0 lifts the throttle), validated."""
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


class Controlled(Protocol):
    """What :func:`apply` needs of a node (a :class:`~node_core.node.Node`): its injector."""

    @property
    def faults(self) -> FaultInjector: ...


async def apply(
    node: Controlled,
    action: Action | LinkAction,
    *,
    principal: Principal = LOCAL_OPERATOR,
    policy: ControlPolicy | None = None,
) -> ActionResult:
    """Check the policy, then do ``action`` through the node's fault injector.

    Never raises for a refusal or a failure: the result says what happened and why.
    """
    refused = (policy or ControlPolicy()).refuse(action.kind, principal)
    if refused is not None:
        return refused
    if isinstance(action, LinkAction):
        return await _apply_link(node.faults, action, principal.journal_fields())
    faults, by = node.faults, principal.journal_fields()
    kind = action.action_kind
    try:
        outcome: FaultOutcome
        if kind is ActionKind.DISCONNECT:
            outcome = await faults.disconnect(action.label, actor=by)
        elif kind is ActionKind.PANIC:
            outcome = await faults.panic(action.label, action.service or "", actor=by)
        elif kind is ActionKind.PARK:
            outcome = await faults.park(action.label, action.effective_service or "", actor=by)
        elif kind is ActionKind.UNPARK:
            outcome = await faults.unpark(action.label, action.effective_service or "", actor=by)
        elif kind is ActionKind.STALL:
            seconds = STALL_DEFAULT_S if action.seconds is None else float(action.seconds)
            outcome = await faults.stall(
                action.label, action.effective_service or "", seconds=seconds, actor=by
            )
        else:
            # The node takes bytes/s, and None (not 0) as "lift".
            rate = float(action.rate) * 1024 if action.rate else None
            outcome = await faults.throttle(action.label, rate, actor=by)
    except FaultsDisabled as exc:
        return ActionResult(False, str(exc), refusal=Refusal.FAULTS_DISABLED)
    except UnknownPeer as exc:
        return ActionResult(False, str(exc), refusal=Refusal.UNKNOWN_PEER, field="label")
    except RoutineNotRunning as exc:
        return ActionResult(False, str(exc), refusal=Refusal.NOT_RUNNING)
    except NotParked as exc:
        return ActionResult(False, str(exc), refusal=Refusal.NOT_PARKED)
    except FaultInvalid as exc:
        return ActionResult(False, str(exc), refusal=Refusal.INVALID, field=exc.field)
    except FaultError as exc:
        return ActionResult(False, str(exc), refusal=Refusal.NOT_RUNNING)
    except TimeoutError:
        return ActionResult(
            False,
            f"no effect observed within 5 s for: {action.describe()}",
            refusal=Refusal.NO_EFFECT,
        )
    return ActionResult(
        True,
        f"{action.describe()}: {outcome.effect} ({outcome.reason})",
        outcome.fault_id,
        outcome.effect,
        outcome.reason,
    )


async def _apply_link(
    faults: FaultInjector, action: LinkAction, by: Mapping[str, str | None]
) -> ActionResult:
    """A link fault, after the policy allowed it; its refusals as :func:`apply`'s."""
    kind = action.link_kind
    nodes: Sequence[bytes] = action.nodes or ()
    try:
        outcome: LinkOutcome
        if kind is LinkKind.PARTITION:
            outcome = await faults.partition(nodes, actor=by)
        elif kind is LinkKind.DELAY:
            outcome = await faults.delay(
                nodes, int(action.ms or 0), int(action.jitter_ms or 0), actor=by
            )
        elif kind is LinkKind.BANDWIDTH:
            outcome = await faults.bandwidth(nodes, int(action.kib_per_s or 0), actor=by)
        else:
            outcome = await faults.heal(action.nodes, actor=by)
    except FaultsDisabled as exc:
        return ActionResult(False, str(exc), refusal=Refusal.FAULTS_DISABLED)
    except FaultInvalid as exc:
        return ActionResult(False, str(exc), refusal=Refusal.INVALID, field=exc.field)
    except TimeoutError:
        return ActionResult(
            False,
            f"no effect observed within 5 s for: {action.describe()}",
            refusal=Refusal.NO_EFFECT,
        )
    details: dict[str, Any] = {
        "action": kind.value,
        "nodes": None if action.nodes is None else [n.hex() for n in outcome.nodes],
    }
    if kind is LinkKind.PARTITION:
        details["closed"] = outcome.closed
    elif kind is LinkKind.DELAY:
        details.update(ms=action.ms, jitter_ms=action.jitter_ms)
    elif kind is LinkKind.BANDWIDTH:
        details["kib_per_s"] = action.kib_per_s
    else:
        details["healed"] = [n.hex() for n in outcome.healed]
    return ActionResult(
        True,
        f"{action.describe()}: {outcome.effect} ({outcome.reason})",
        outcome.fault_id,
        outcome.effect,
        outcome.reason,
        details=details,
    )
