"""Diagnostics: what is wrong with the node now, each with a sentence saying where to look.

A console that shows two hundred numbers should also say which ones are wrong. The node
computes that itself, from its own snapshot and journal, so every surface shows the same
verdict: the snapshot's ``diagnostics`` section (the console's Diagnostics view and status
bar, ``/api/v1/snapshot``, the SSH ``diagnostics`` command), the Prometheus gauge
``zakura_diagnostic_active{id}`` and the journal rows ``diagnostic/started`` and
``diagnostic/cleared`` (docs/ARCHITECTURE.md, "Observation").

**Sans-I/O.** :class:`DiagnosticsEvaluator` reads the facts of the node it needs
(:class:`~node_core.observe.diagnostic_facts.NodeFacts`: a few numbers per running sync
routine and a handful of node-wide ones), either from a snapshot document (schema
:data:`~node_core.observe.schema.SCHEMA_VERSION`, :meth:`DiagnosticsEvaluator.evaluate`) or
as the node reads them from its services without building that document
(:meth:`DiagnosticsEvaluator.evaluate_facts`), plus the panics journalled since its last call
and ``now``; it keeps, per diagnostic and subject, since when the condition has held, and
returns the active diagnostics and what started or cleared. It never reads a clock, never
awaits and never touches the node, so the tests drive it with made-up documents and times,
and a recording could be evaluated the same way after the fact. The node calls it once a
second from a background task (:data:`EVAL_INTERVAL`), so journal rows appear even when no
console is open.

**The diagnostics** (:data:`DIAGNOSTICS`; thresholds in :class:`DiagnosticThresholds`, set
with ``--diag KEY=VALUE``):

* ``routine_stalled`` (warning, subject ``LABEL SERVICE``): a running header- or block-sync
  routine with work outstanding and no progress for ``stall_s``. Block sync: heights
  requested and not received while its accepted-block count stays put. Header sync: commands
  waiting in its queue or header requests outstanding while those requests stay the same.
* ``peer_parked`` (warning, subject the peer): a peer's header sync parked for ``parked_s``.
* ``command_queue_full`` (warning): a header-sync routine's command queue, or one of the
  reactor's queues (subject ``header_sync reactor``), at ``queue_pct`` percent or more.
* ``loop_lag_high`` (critical, subject ``node``): the event loop's lag p99 above
  ``loop_lag_ms``.
* ``panic_loop`` (critical, subject the peer): ``panics`` panics of one peer's routines
  within ``panic_window_s``.
* ``header_tip_behind`` (critical, subject ``node``): the header tip below the best tip a
  peer advertises, while a peer that has it is idle (no range in flight, no request
  outstanding), for ``behind_s``.
* ``budget_saturated`` (critical, subject ``block_sync``): the block-sync byte budget at
  ``budget_pct`` percent or more with no body committed for ``budget_s``.
* ``window_floor`` (warning, subject the peer): a block-sync routine whose download window
  sits at its floor (:data:`WINDOW_FLOOR_BLOCKS`, or the peer's lower request cap) with
  requests outstanding, for ``floor_s``.

``since`` is when the condition began (the last progress, the park, the first commit-less
second of a full budget, ...), not when the threshold was crossed, so the operator reads how
long it has really been. A condition that stops holding for one evaluation starts over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, cast

from node_core.observe.diagnostic_facts import NodeFacts, facts_from_snapshot

if TYPE_CHECKING:
    from node_core.observe.schema import DiagnosticRow, Snapshot

__all__ = [
    "DIAGNOSTICS",
    "EVAL_INTERVAL",
    "KNOBS",
    "WINDOW_FLOOR_BLOCKS",
    "Diagnostic",
    "DiagnosticThresholds",
    "DiagnosticsEvaluator",
    "Evaluation",
    "Knob",
    "PanicSeen",
    "knobs_help",
    "parse_diag",
]

#: Seconds between two evaluations on the node (its background task).
EVAL_INTERVAL = 1.0

#: The block-sync window's floor in blocks (``WindowConfig.min_cwnd``): a window there with
#: requests outstanding is a peer the node can use only a little.
WINDOW_FLOOR_BLOCKS = 4

WARNING = "warning"
CRITICAL = "critical"

#: Every diagnostic id with its severity, in the order the view lists them.
DIAGNOSTICS: dict[str, str] = {
    "panic_loop": CRITICAL,
    "loop_lag_high": CRITICAL,
    "header_tip_behind": CRITICAL,
    "budget_saturated": CRITICAL,
    "routine_stalled": WARNING,
    "peer_parked": WARNING,
    "command_queue_full": WARNING,
    "window_floor": WARNING,
}


@dataclass(frozen=True, slots=True)
class DiagnosticThresholds:
    """When each diagnostic fires; the defaults are the documented ones (README,
    "Diagnostics"). Set with ``--diag KEY=VALUE`` on ``zakura node`` and ``zakura console``."""

    stall_s: float = 30.0
    parked_s: float = 60.0
    queue_pct: float = 80.0
    loop_lag_ms: float = 250.0
    panics: int = 3
    panic_window_s: float = 300.0
    behind_s: float = 30.0
    budget_pct: float = 90.0
    budget_s: float = 30.0
    floor_s: float = 60.0

    def __post_init__(self) -> None:
        for knob in KNOBS:
            value = getattr(self, knob.key)
            if not knob.low <= value <= knob.high:
                raise ValueError(f"{knob.key} must be from {knob.low:g} to {knob.high:g}")

    def summary(self) -> str:
        """The thresholds in one line, for the Diagnostics view's empty state."""
        return (
            f"stalled routine {self.stall_s:g} s, parked {self.parked_s:g} s, "
            f"command queue {self.queue_pct:g} %, loop lag p99 {self.loop_lag_ms:g} ms, "
            f"{self.panics} panics in {self.panic_window_s:g} s, "
            f"header tip behind {self.behind_s:g} s, "
            f"budget {self.budget_pct:g} % without commits {self.budget_s:g} s, "
            f"window floor {self.floor_s:g} s"
        )

    def to_dict(self) -> dict[str, float]:
        """The snapshot's ``diagnostic_thresholds``: every key with its value."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> DiagnosticThresholds:
        """Back from :meth:`to_dict` (a reader's side): unknown keys ignored, missing ones
        default, a value out of bounds raises ``ValueError``."""
        known = {k.key: k for k in KNOBS}
        changes: dict[str, Any] = {
            key: int(value) if known[key].integer else float(value)
            for key, value in values.items()
            if key in known
        }
        return cls(**changes)


@dataclass(frozen=True, slots=True)
class Knob:
    """One ``--diag`` key: its bounds, unit and what it sets."""

    key: str
    diagnostic: str
    low: float
    high: float
    help: str
    integer: bool = False


#: Every ``--diag`` key, in the order ``--help`` lists them.
KNOBS: tuple[Knob, ...] = (
    Knob("stall_s", "routine_stalled", 0.1, 86_400, "seconds a routine may hold work unmoved"),
    Knob("parked_s", "peer_parked", 0.1, 86_400, "seconds a peer's header sync may stay parked"),
    Knob("queue_pct", "command_queue_full", 1, 100, "percent full a command queue may reach"),
    Knob("loop_lag_ms", "loop_lag_high", 1, 60_000, "event-loop lag p99 allowed, in ms"),
    Knob("panics", "panic_loop", 1, 10_000, "panics of one peer's routines ...", integer=True),
    Knob("panic_window_s", "panic_loop", 1, 86_400, "... within this many seconds"),
    Knob("behind_s", "header_tip_behind", 0.1, 86_400, "seconds behind with idle peers"),
    Knob("budget_pct", "budget_saturated", 1, 100, "percent of the byte budget reserved ..."),
    Knob("budget_s", "budget_saturated", 0.1, 86_400, "... for this many seconds, no commit"),
    Knob("floor_s", "window_floor", 0.1, 86_400, "seconds a busy window may sit at its floor"),
)


def knobs_help() -> str:
    """The ``--help`` section listing every ``--diag`` key, its default and diagnostic."""
    defaults = DiagnosticThresholds()
    lines = ["diagnostic thresholds (--diag KEY=VALUE, repeat the flag for several):"]
    for knob in KNOBS:
        default = f"{getattr(defaults, knob.key):g}"
        lines.append(f"  {knob.key:<15}{default:>6}  {knob.help} ({knob.diagnostic})")
    return "\n".join(lines)


def parse_diag(
    items: Iterable[str], base: DiagnosticThresholds | None = None
) -> DiagnosticThresholds:
    """Thresholds from ``KEY=VALUE`` strings (``--diag``), over ``base`` or the defaults.

    Raises:
        ValueError: One line naming the bad item: unknown key, not a number, out of bounds.
    """
    by_key = {k.key: k for k in KNOBS}
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        knob = by_key.get(key)
        if not sep or knob is None:
            raise ValueError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(by_key)}")
        try:
            value: float = int(text) if knob.integer else float(text)
        except ValueError:
            kind = "a whole number" if knob.integer else "a number"
            raise ValueError(f"{item!r}: {key} takes {kind}") from None
        if not knob.low <= value <= knob.high:
            raise ValueError(f"{item!r}: {key} must be from {knob.low:g} to {knob.high:g}")
        changes[key] = value
    return replace(base or DiagnosticThresholds(), **changes)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One active diagnostic: what is wrong (``id``), where (``subject``), since when, and a
    sentence that says what to look at."""

    id: str
    severity: str
    subject: str
    since: float
    message: str

    def row(self) -> DiagnosticRow:
        """The snapshot's ``diagnostics`` entry."""
        return {
            "id": self.id,
            "severity": self.severity,
            "subject": self.subject,
            "since": self.since,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PanicSeen:
    """A ``routine/panicked`` journal row, as the evaluator needs it."""

    peer: str
    service: str
    wall: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation: everything active now, and what changed since the last one."""

    active: tuple[Diagnostic, ...]
    started: tuple[Diagnostic, ...]
    cleared: tuple[Diagnostic, ...]


@dataclass(slots=True)
class _Candidate:
    """A condition that holds now: since when, and the sentence fixed when it began."""

    severity: str
    since: float
    message: str
    hold: float


Key = tuple[str, str]  # (id, subject)


@dataclass(slots=True)
class DiagnosticsEvaluator:
    """Keeps since-when state between calls of :meth:`evaluate` (see the module docstring)."""

    thresholds: DiagnosticThresholds = field(default_factory=DiagnosticThresholds)
    #: (id, subject) -> the candidate while its condition has held at every evaluation.
    _held: dict[Key, _Candidate] = field(default_factory=dict)
    #: Routine (label, service, generation) -> (progress token, when it last changed).
    _progress: dict[tuple[str, str, int], tuple[object, float]] = field(default_factory=dict)
    #: Peer label -> wall times of its routines' recent panics (and their services).
    _panics: dict[str, deque[PanicSeen]] = field(default_factory=dict)
    #: Block sync's committed count and when it last changed.
    _commits: tuple[int, float] | None = None
    _active: dict[Key, Diagnostic] = field(default_factory=dict)
    #: The evaluation under way: what holds so far, and its ``now``.
    _found: dict[Key, _Candidate] = field(default_factory=dict)
    _now: float = 0.0
    #: Since when the byte budget has been saturated at every evaluation.
    _saturated_since: float = 0.0

    @property
    def active(self) -> tuple[Diagnostic, ...]:
        """The diagnostics active after the last evaluation, in :data:`DIAGNOSTICS` order."""
        return _ordered(self._active.values())

    def evaluate(self, snap: Snapshot, panics: Iterable[PanicSeen], now: float) -> Evaluation:
        """Evaluate the node as ``snap`` shows it at wall time ``now``.

        Args:
            snap: The node's snapshot document (its own ``diagnostics`` section is ignored).
            panics: ``routine/panicked`` rows journalled since the previous call.
            now: Wall-clock seconds (the ``since`` of every diagnostic is wall time too).
        """
        return self.evaluate_facts(facts_from_snapshot(snap), panics, now)

    def evaluate_facts(
        self, facts: NodeFacts, panics: Iterable[PanicSeen], now: float
    ) -> Evaluation:
        """Evaluate the node as ``facts`` show it at wall time ``now`` (what :meth:`evaluate`
        does after reading the facts from a snapshot; the node reads them from itself)."""
        self._found = {}
        self._now = now
        t = self.thresholds
        self._routines(facts, now)
        for parked in facts.parked:
            label = parked.label
            self._hold(
                ("peer_parked", label),
                f"header sync of {label} is parked ({parked.reason}): see the Parked view "
                "(5); u unparks it, and a command queue that fills again parks it again",
                t.parked_s,
                since=parked.since,
            )
        self._queues(facts)
        if facts.lag_samples and facts.lag_p99_ms > t.loop_lag_ms:
            self._hold(
                ("loop_lag_high", "node"),
                f"event-loop lag p99 above {t.loop_lag_ms:g} ms: every routine waits on one "
                "loop, so look for a synchronous hog (validation, a blocking call) in the log "
                "and for a busy host; the Overview's loop-lag sparkline shows since when",
                0.0,
            )
        self._panic_loop(panics, now)
        self._behind(facts)
        self._budget(facts, now)

        self._held = found = self._found
        active = {
            key: Diagnostic(key[0], c.severity, key[1], c.since, c.message)
            for key, c in found.items()
            if now - c.since >= c.hold
        }
        started = _ordered(d for k, d in active.items() if k not in self._active)
        cleared = _ordered(d for k, d in self._active.items() if k not in active)
        self._active = active
        return Evaluation(self.active, started, cleared)

    # ------------------------------------------------------------------ conditions

    def _hold(self, key: Key, message: str, threshold: float, since: float | None = None) -> None:
        """Record that ``key``'s condition holds now. ``since`` is when it began, when the
        condition knows (the last progress, the park); None: when it was first seen holding.
        The sentence is the one made when it began, so a journal row and the view agree."""
        held = self._held.get(key)
        if held is None:
            start = self._now if since is None else since
            self._found[key] = _Candidate(DIAGNOSTICS[key[0]], start, message, threshold)
        else:
            if since is not None:
                held.since = since
            self._found[key] = held

    def _routines(self, facts: NodeFacts, now: float) -> None:
        t = self.thresholds
        seen: set[tuple[str, str, int]] = set()
        for r in facts.routines:
            label = r.label
            work, token = False, cast("object", None)
            bs, hs = r.block_sync, r.header_sync
            if bs is not None:
                work, token = bs.outstanding > 0, bs.accepted_blocks
                floor = min(WINDOW_FLOOR_BLOCKS, bs.hard_cap)
                if work and bs.cwnd <= floor:
                    self._hold(
                        ("window_floor", label),
                        f"block-sync window of {label} sits at its floor ({floor} blocks) "
                        "with requests outstanding: the peer is slow, throttled or losing "
                        "requests; see its window, RTT and reliability in the peer detail "
                        "(2, enter) and its throttle in the Peers view",
                        t.floor_s,
                    )
            elif hs is not None:
                work = hs.queue_depth > 0 or bool(hs.outstanding)
                token = hs.outstanding
            if not work:
                continue
            key = (label, r.service, r.generation)
            seen.add(key)
            last = self._progress.get(key)
            if last is None or last[0] != token:
                last = (token, now)
                self._progress[key] = last
            self._hold(
                ("routine_stalled", f"{label} {r.service}"),
                f"{r.service} routine of {label} holds work and has made no progress for "
                f"{t.stall_s:g} s: see its requests and stall in the peer detail (2, enter), "
                "its throttle in the Peers view, and request timeouts in the Journal (3)",
                t.stall_s,
                since=last[1],
            )
        for gone in [k for k in self._progress if k not in seen]:
            del self._progress[gone]

    def _queues(self, facts: NodeFacts) -> None:
        pct = self.thresholds.queue_pct

        def full(depth: int, size: int) -> bool:
            return size > 0 and depth * 100.0 >= pct * size

        for r in facts.routines:
            hs = r.header_sync
            if hs is not None and full(hs.queue_depth, hs.queue_max):
                label = r.label
                self._hold(
                    ("command_queue_full", label),
                    f"header-sync command queue of {label} is {pct:g} % full or more: its "
                    "routine is not taking commands (stalled, or the peer stopped reading "
                    "our answers), and a never-drop command that does not fit parks it",
                    0.0,
                )
        if full(facts.reactor_events, facts.reactor_events_max) or full(
            facts.reactor_actions, facts.reactor_actions_max
        ):
            self._hold(
                ("command_queue_full", "header_sync reactor"),
                f"a header-sync reactor queue is {pct:g} % full or more: the reactor falls "
                "behind its routines; see the loop lag and the pending commits in the "
                "Overview's header-sync panel",
                0.0,
            )

    def _panic_loop(self, panics: Iterable[PanicSeen], now: float) -> None:
        t = self.thresholds
        for p in panics:
            self._panics.setdefault(p.peer, deque()).append(p)
        for label in list(self._panics):
            recent = self._panics[label]
            while recent and recent[0].wall < now - t.panic_window_s:
                recent.popleft()
            if not recent:
                del self._panics[label]
            elif len(recent) >= t.panics:
                services = ", ".join(sorted({p.service for p in recent}))
                self._hold(
                    ("panic_loop", label),
                    f"routines of {label} ({services}) panicked {t.panics} times or more "
                    f"within {t.panic_window_s:g} s: read the exceptions in the Journal's "
                    "routine/panicked rows (3); each panic drops the peer, which redials",
                    0.0,
                    since=recent[-t.panics].wall,
                )

    def _behind(self, facts: NodeFacts) -> None:
        tip = facts.header_tip
        best, idle = tip, 0
        for r in facts.routines:
            hs = r.header_sync
            if hs is None or not hs.received_status:
                continue
            if hs.advertised_tip > tip:
                best = max(best, hs.advertised_tip)
                if not hs.in_flight and not hs.outstanding:
                    idle += 1
        if best > tip and idle:
            self._hold(
                ("header_tip_behind", "node"),
                f"header tip {tip} is behind the tip {best} a peer advertises and peers that "
                "have it are idle: see the refused headers and the candidate branch in the "
                "Overview's header-sync panel, and each peer's fork search in the peer detail",
                self.thresholds.behind_s,
            )

    def _budget(self, facts: NodeFacts, now: float) -> None:
        t = self.thresholds
        committed = facts.committed_total
        if self._commits is None or self._commits[0] != committed:
            self._commits = (committed, now)
        key = ("budget_saturated", "block_sync")
        full = facts.budget_reserved * 100.0 >= t.budget_pct * facts.budget_max
        if facts.budget_max > 0 and full:
            held = self._held.get(key)
            saturated_since = now if held is None else self._saturated_since
            self._saturated_since = saturated_since
            self._hold(
                key,
                f"block-sync byte budget {t.budget_pct:g} % used or more and no body "
                "committed: either the height the committer waits for is not arriving (see "
                "block_sync.stall and the fill stops in the Overview's block-sync panel) or "
                "the store is not writing (see the log for store errors and the disk)",
                t.budget_s,
                since=max(saturated_since, self._commits[1]),
            )


def _ordered(items: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    order = {name: i for i, name in enumerate(DIAGNOSTICS)}
    return tuple(sorted(items, key=lambda d: (order.get(d.id, len(order)), d.subject)))


def rows(diagnostics: Sequence[Diagnostic]) -> list[DiagnosticRow]:
    """The snapshot's ``diagnostics`` section."""
    return [d.row() for d in diagnostics]


def panics_from(events: Iterable[Mapping[str, Any]]) -> list[PanicSeen]:
    """``routine/panicked`` rows (journal rows as dicts) as :class:`PanicSeen`."""
    return [
        PanicSeen(str(e.get("peer")), str(e.get("service")), float(e.get("wall", 0.0)))
        for e in events
        if e.get("table") == "routine" and e.get("event") == "panicked" and e.get("peer")
    ]
