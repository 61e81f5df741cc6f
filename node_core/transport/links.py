"""Link faults: the node breaking its own links to chosen peers (issue 12), sans-I/O.

Kernel network emulation (netem, iptables) needs privileges and Linux, and it acts on
addresses, which on a loopback testnet all nodes share. So the node itself breaks its links,
per remote node identity, at the transport boundary: this module holds the rules and the
arithmetic, and the transport applies them (``endpoint.py`` refuses partitioned peers at the
handshake and at dial time, ``connection.py`` holds and paces what it writes to a shaped
peer). Everything here is plain data and pure functions of ``now``, so the scheduling is
tested without a socket or a clock (docs/ARCHITECTURE.md, "The control model").

Invariants:

- A node id has a :class:`LinkRule` in the :class:`LinkTable` only while the rule does
  something; a rule that would do nothing is removed, so ``rows()`` lists only live rules.
- :func:`schedule` never releases a record before an earlier one of the same connection
  (``due`` is monotone), so a delayed stream stays ordered whatever the jitter.
- Pacing is serialisation: a record of ``n`` bytes occupies the paced link for
  ``n / rate`` seconds and is released when its last byte would have left, so ``N`` bytes
  sent at once take at least ``N / rate`` seconds to all leave.
- The jitter comes from the table's own :class:`random.Random`, seeded from the config, so a
  run with the same seed and the same sends draws the same delays.
- A heal that lifts partitions tells every :attr:`LinkTable.on_heal` listener which node ids
  it lifted them for. The node wires its dialer there, so the dials the partition refused are
  retried at once rather than after their backoff; the transport never imports discovery.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypedDict

__all__ = [
    "KIB",
    "MAX_DELAY_MS",
    "MAX_JITTER_MS",
    "MAX_KIB_PER_S",
    "MIN_KIB_PER_S",
    "NODE_ID_BYTES",
    "LinkRow",
    "LinkRule",
    "LinkTable",
    "Pacing",
    "schedule",
]

#: Bounds of a link delay and its jitter, in milliseconds: a minute is far past every
#: timeout a node keeps (requests time out after 30 s), so anything longer is a typo.
MAX_DELAY_MS = 60_000
MAX_JITTER_MS = 60_000
#: Bounds of a paced link, in KiB/s (the unit of the read throttle): 1 KiB/s is slow enough
#: to starve any sync, 1 GiB/s is far above what a loopback node drives.
MIN_KIB_PER_S = 1
MAX_KIB_PER_S = 1_048_576
KIB = 1024
#: A node id is an Ed25519 public key.
NODE_ID_BYTES = 32

log = logging.getLogger(__name__)


class LinkRow(TypedDict):
    """One node's rule as ``GET /api/v1/links`` serves it."""

    node: str  # node id, 64 hex
    partitioned: bool
    delay_ms: int
    jitter_ms: int
    kib_per_s: int | None


@dataclass(frozen=True, slots=True)
class LinkRule:
    """What this node does to its link with one remote node.

    ``partitioned``: refuse every connection with it and keep none. ``delay_ms`` and
    ``jitter_ms``: hold each record sent to it ``delay_ms`` plus a uniform draw in
    ``[-jitter_ms, +jitter_ms]`` (never less than 0), as netem's ``delay D J`` does.
    ``kib_per_s``: pace the bytes sent to it at that rate (None: unpaced).
    """

    partitioned: bool = False
    delay_ms: int = 0
    jitter_ms: int = 0
    kib_per_s: int | None = None

    @property
    def shapes(self) -> bool:
        """Whether what we send to this node is held or paced (not merely refused)."""
        return bool(self.delay_ms or self.jitter_ms or self.kib_per_s)

    @property
    def idle(self) -> bool:
        """A rule that does nothing: the table drops it."""
        return not self.partitioned and not self.shapes

    def row(self, node_id: bytes) -> LinkRow:
        return {
            "node": node_id.hex(),
            "partitioned": self.partitioned,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "kib_per_s": self.kib_per_s,
        }


@dataclass(frozen=True, slots=True)
class Pacing:
    """One connection's shaping clock: when its last held record is due, and when its paced
    link is free again (monotonic seconds; ``-inf`` before the first record)."""

    released: float = -math.inf
    link_free: float = -math.inf


def schedule(
    rule: LinkRule | None, pacing: Pacing, now: float, size: int, jitter: float = 0.0
) -> tuple[float, Pacing]:
    """When a record of ``size`` bytes handed over at ``now`` may be written, and the new clock.

    The paced link serialises first (a record starts when the link is free and leaves
    ``size / rate`` seconds later), then the delay is added, like a slow link followed by a
    long wire. ``jitter`` is a draw in ``[-1, 1]`` scaling ``rule.jitter_ms``. The result is
    never earlier than the previous record's, so records leave in the order they came.
    With no rule (a healed link still draining its held records) a record is due at once,
    behind those still held.
    """
    due = now
    link_free = pacing.link_free
    if rule is not None:
        if rule.kib_per_s:
            start = max(now, link_free)
            link_free = start + size / (rule.kib_per_s * KIB)
            due = link_free
        held_ms = rule.delay_ms + jitter * rule.jitter_ms
        if held_ms > 0:
            due += held_ms / 1000.0
    due = max(due, pacing.released)
    return due, Pacing(due, link_free)


class LinkTable:
    """The link rules of one node, keyed by remote node id; the one mutable piece.

    The transport asks it on every write (``shaping``) and at every handshake
    (``partitioned``), so both are one dict lookup and an empty table costs nothing more.
    """

    __slots__ = ("_rules", "_shaping", "on_heal", "rng")

    def __init__(self, seed: int) -> None:
        self._rules: dict[bytes, LinkRule] = {}
        self._shaping: dict[bytes, LinkRule] = {}
        #: Draws the jitter; its own generator so a test seeds it without touching others.
        self.rng = random.Random(seed)
        #: Called with the ids whose partition a heal lifted (never with none), after their
        #: rules are gone: a delay or a pace refused no dial, so its heal calls nobody.
        self.on_heal: list[Callable[[list[bytes]], None]] = []

    def __len__(self) -> int:
        return len(self._rules)

    def get(self, node_id: bytes) -> LinkRule | None:
        return self._rules.get(node_id)

    def partitioned(self, node_id: bytes) -> bool:
        rule = self._rules.get(node_id)
        return rule is not None and rule.partitioned

    def shaping(self, node_id: bytes) -> LinkRule | None:
        """The rule that holds or paces what we send to ``node_id``, if any."""
        return self._shaping.get(node_id) if self._shaping else None

    def jitter(self, rule: LinkRule) -> float:
        """A draw in ``[-1, 1]`` for ``rule`` (0 without jitter: no draw is spent)."""
        return self.rng.uniform(-1.0, 1.0) if rule.jitter_ms else 0.0

    def _set(self, node_id: bytes, rule: LinkRule) -> None:
        if rule.idle:
            self._rules.pop(node_id, None)
        else:
            self._rules[node_id] = rule
        if rule.shapes:
            self._shaping[node_id] = rule
        else:
            self._shaping.pop(node_id, None)

    def _update(self, nodes: Iterable[bytes], change: Callable[[LinkRule], LinkRule]) -> None:
        for node_id in nodes:
            _check_id(node_id)
            self._set(node_id, change(self._rules.get(node_id, LinkRule())))

    def partition(self, nodes: Iterable[bytes]) -> None:
        self._update(nodes, lambda r: replace(r, partitioned=True))

    def delay(self, nodes: Iterable[bytes], ms: int, jitter_ms: int = 0) -> None:
        if not 0 <= ms <= MAX_DELAY_MS or not 0 <= jitter_ms <= MAX_JITTER_MS:
            raise ValueError(f"delay {ms} ms, jitter {jitter_ms} ms out of bounds")
        self._update(nodes, lambda r: replace(r, delay_ms=ms, jitter_ms=jitter_ms))

    def bandwidth(self, nodes: Iterable[bytes], kib_per_s: int) -> None:
        if not MIN_KIB_PER_S <= kib_per_s <= MAX_KIB_PER_S:
            raise ValueError(f"bandwidth {kib_per_s} KiB/s out of bounds")
        self._update(nodes, lambda r: replace(r, kib_per_s=kib_per_s))

    def heal(self, nodes: Iterable[bytes] | None = None) -> list[bytes]:
        """Drop the rules of ``nodes`` (None: every rule); returns the ids that had one."""
        targets = list(self._rules) if nodes is None else [n for n in nodes if n in self._rules]
        unrefused = [n for n in targets if self._rules[n].partitioned]
        for node_id in targets:
            self._set(node_id, LinkRule())
        if unrefused:
            for listener in self.on_heal:
                try:
                    listener(list(unrefused))
                except Exception:
                    log.exception("link heal listener failed")
        return targets

    def rows(self) -> list[LinkRow]:
        """Every live rule, ordered by node id (a stable order for clients and tests)."""
        return [self._rules[n].row(n) for n in sorted(self._rules)]


def _check_id(node_id: bytes) -> None:
    if len(node_id) != NODE_ID_BYTES:
        raise ValueError(f"a node id is {NODE_ID_BYTES} bytes, got {len(node_id)}")
