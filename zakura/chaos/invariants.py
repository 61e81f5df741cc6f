"""What must hold after a cluster was broken on purpose, as plain functions.

Each check reads only what anyone can read from outside a node (snapshot documents, journal
rows, the SQLite store opened read-only), so the same function serves a :class:`Cluster` of
processes and a node test in one event loop (``node.snapshot()``, ``e.to_dict()`` of its
journal events, its data dir). Each returns a :class:`Check`: the invariant's name, what was
looked at, and one :class:`Violation` per broken instance naming the node and the evidence.

The invariants (the names are :data:`INVARIANTS`):

- :func:`same_best_chain`: honest nodes converge on one best chain (verified tip, height and
  hash);
- :func:`store_sound`: a node's store links contiguously from genesis, every stored header is
  what its row says and every body matches its header, no block is stored twice; and
  :func:`no_block_lost`: a block a node reported durable before a SIGKILL is in its store
  after it;
- :func:`no_stranded_work`: when idle, every header range assigned is owned by a live
  session, the block work queue's ledger balances, the byte budget
  holds nothing once no height is tracked, no routine outlives its connection, and no parked
  peer still holds a range;
- :func:`panics_match`: every panic in a node's journal was injected (and each injected one
  happened);
- :func:`honest_not_punished`: no honest peer was ever disconnected for misbehavior;
- :func:`hostile_recorded`: every hostile peer is in some honest node's misbehavior records.

:func:`check_cluster` runs them all on a live cluster; :func:`assert_holds` turns violations
into one readable assertion.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_core.chain.genesis import GENESIS_HASHES
from node_core.chain.model import BlockHeader, body_root
from node_core.chain.store import ChainStore, StoreError
from node_core.protocol.errors import CodecError

if TYPE_CHECKING:
    from zakura.chaos.cluster import Cluster, KillRecord

__all__ = [
    "CONVERGED",
    "HONEST_KEPT",
    "HOSTILE_RECORDED",
    "INVARIANTS",
    "NO_BLOCK_LOST",
    "NO_STRANDED_WORK",
    "PANICS_MATCH",
    "STORE_SOUND",
    "Check",
    "Violation",
    "assert_holds",
    "check_cluster",
    "format_checks",
    "honest_not_punished",
    "hostile_recorded",
    "no_block_lost",
    "no_stranded_work",
    "panics_match",
    "same_best_chain",
    "store_sound",
]

#: A node as a check names it: its index in a cluster, or its label in a node test.
NodeKey = Hashable
Doc = Mapping[str, Any]

CONVERGED = "honest nodes converge on one best chain"
STORE_SOUND = "each store links from genesis and matches its headers"
NO_BLOCK_LOST = "no committed block lost across kills"
NO_STRANDED_WORK = "no stranded work when idle"
PANICS_MATCH = "panics observed = panics injected"
HONEST_KEPT = "honest peers never disconnected for misbehavior"
HOSTILE_RECORDED = "hostile peers recorded in misbehavior"
#: Every invariant, in the order :func:`check_cluster` reports them.
INVARIANTS = (
    CONVERGED,
    STORE_SOUND,
    NO_BLOCK_LOST,
    NO_STRANDED_WORK,
    PANICS_MATCH,
    HONEST_KEPT,
    HOSTILE_RECORDED,
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken instance of an invariant: which, on which node, and what shows it."""

    invariant: str
    #: The node (an index, or a label in node tests); None when no one node is to blame.
    node: NodeKey | None
    evidence: str

    def format(self) -> str:
        where = "cluster" if self.node is None else f"node {self.node}"
        return f"{self.invariant}: {where}: {self.evidence}"


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict of one invariant: what was checked (``evidence``) and what broke."""

    invariant: str
    evidence: str
    violations: tuple[Violation, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def format(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.invariant}: {self.evidence}"
        return "\n".join([head, *(f"       {v.format()}" for v in self.violations)])


def _check(invariant: str, evidence: str, problems: Iterable[tuple[NodeKey | None, str]]) -> Check:
    return Check(invariant, evidence, tuple(Violation(invariant, n, e) for n, e in problems))


def _tip(ref: Doc) -> tuple[int, str]:
    return int(ref["height"]), str(ref["hash"])


def _fmt_tip(tip: tuple[int, str]) -> str:
    return f"{tip[0]} {tip[1][:12]}"


# ---------------------------------------------------------------------- the best chain
def same_best_chain(snapshots: Mapping[NodeKey, Doc]) -> Check:
    """Every node in ``snapshots`` (pass the honest ones) has the same verified tip.

    A node off the most common tip is the violation; on a tie every node is.
    """
    tips = {node: _tip(s["chain"]["verified_tip"]) for node, s in snapshots.items()}
    counts = Counter(tips.values())
    if len(counts) <= 1:
        tip = next(iter(counts), None)
        at = "no node" if tip is None else f"verified tip {_fmt_tip(tip)}"
        return _check(CONVERGED, f"{len(tips)} nodes at {at}", [])
    (common, n), (_, m) = counts.most_common(2)
    holders = ", ".join(str(k) for k, t in tips.items() if t == common)
    problems = [
        (node, f"verified tip {_fmt_tip(tip)}; nodes {holders} hold {_fmt_tip(common)}")
        for node, tip in tips.items()
        if tip != common or n == m
    ]
    return _check(CONVERGED, f"{len(tips)} nodes on {len(counts)} different tips", problems)


# ---------------------------------------------------------------------- stores
def store_sound(path: Path, node: NodeKey | None = None) -> Check:
    """The SQLite store at ``path``, opened read-only (a running node may be writing it).

    Holds when the store's own check passes (headers contiguous from 0 and linked, tips as
    stored, no body without a header), height 0 is a known genesis, every stored header
    decodes to its row's height, hash and parent, no hash is stored twice, and every body
    hashes to its header's body root.
    """
    problems: list[tuple[NodeKey | None, str]] = []
    try:
        store = ChainStore(path, readonly=True)
    except StoreError as exc:
        return _check(STORE_SOUND, f"{path}", [(node, str(exc))])
    try:
        problems += [(node, p) for p in store.check_consistency()]
        tip = store.header_tip()
        verified = store.verified_tip()
        top = -1 if tip is None else tip[0]
        seen: dict[bytes, int] = {}
        for start in range(0, top + 1, 1000):
            for offset, raw in enumerate(store.headers_range(start, 1000)):
                height = start + offset
                problems += [(node, p) for p in _header_problems(store, height, raw, seen)]
            if len(problems) > 20:  # enough to see what went wrong
                break
        if top >= 0 and store.hash_at(0) not in GENESIS_HASHES.values():
            problems.append((node, "height 0 holds no known genesis"))
        evidence = f"{path.parent.name}: headers 0..{top}, bodies 0..{verified}"
    except Exception as exc:  # a damaged file: that is the finding
        problems.append((node, f"{type(exc).__name__}: {exc}"))
        evidence = str(path)
    finally:
        store.close()
    return _check(STORE_SOUND, evidence, problems[:20])


def _header_problems(
    store: ChainStore, height: int, raw: bytes, seen: dict[bytes, int]
) -> list[str]:
    try:
        header = BlockHeader.decode(raw)
    except CodecError as exc:
        return [f"header at {height} does not decode: {exc}"]
    out = []
    if header.height != height:
        out.append(f"row {height} holds the header of height {header.height}")
    if store.hash_at(height) != header.hash:
        out.append(f"row {height}: stored hash is not the header's hash")
    if height and store.hash_at(height - 1) != header.prev_hash:
        out.append(f"header at {height} does not link to the stored header below")
    if header.hash in seen:
        out.append(f"block {header.hash.hex()[:12]} stored at {seen[header.hash]} and {height}")
    seen[header.hash] = height
    body = store.body_at(height)
    if body is not None and body_root(body) != header.body_root:
        out.append(f"body at {height} does not match its header's body root")
    return out


def no_block_lost(kills: Iterable[KillRecord]) -> Check:
    """Each SIGKILLed node's store still holds the block it last reported verified.

    ``kills`` are :attr:`Cluster.kills`: the tip a node's snapshot reported just before the
    kill, and what its store held once the process was gone (nothing ran in between).
    """
    problems: list[tuple[NodeKey | None, str]] = []
    kills = list(kills)
    for k in kills:
        if k.reported is None:
            continue  # it did not answer before the kill: nothing was claimed
        if k.store_error is not None or k.stored is None:
            problems.append((k.node, f"store unreadable after the kill: {k.store_error}"))
        elif k.stored.height < k.reported.height:
            problems.append(
                (k.node, f"reported verified tip {k.reported}, store holds only {k.stored}")
            )
        elif k.kept_hash != k.reported.hash:
            problems.append(
                (k.node, f"reported {k.reported}, store holds {k.kept_hash} at that height")
            )
    return _check(NO_BLOCK_LOST, f"{len(kills)} kills", problems)


# ---------------------------------------------------------------------- stranded work
def no_stranded_work(snapshot: Doc, node: NodeKey | None = None) -> Check:
    """Nothing is left half-done in the node's shared structures (check when it is idle).

    - the header range queue is empty or owned: its own check passes against the live
      sessions (every assigned range is held by a live, unparked session under its current
      generation; nothing covered is still queued or assigned). Ranges queued and assigned to
      nobody are not stranded: they wait for a peer that claims those heights (after a
      hostile peer was dropped, nobody may);
    - the block work queue's own check passes (one state per height, owners live, the byte
      ledger balanced: budget used = reserved + held, charged - released = outstanding);
    - the byte budget holds nothing once no height is tracked;
    - no routine outlives its connection (routines started - exited = those on open
      connections, per service);
    - no parked peer still holds a header range.

    Needs the snapshot's ``invariants`` section (nodes since issue 12).
    """
    inv = snapshot.get("invariants")
    if inv is None:
        return _check(NO_STRANDED_WORK, "no invariants section", [(node, "node too old")])
    problems: list[tuple[NodeKey | None, str]] = []
    problems += [(node, f"range queue: {v}") for v in inv["range_queue"]]
    problems += [(node, f"work queue: {v}") for v in inv["work_queue"]]
    rq = snapshot["header_sync"]["range_queue"]
    queued = rq["forward"] + rq["backward"]
    bs = snapshot["block_sync"]
    tracked = bs["pending"] + bs["in_flight"] + bs["received"]
    if not tracked and bs["budget_reserved"]:
        problems.append(
            (node, f"byte budget reserves {bs['budget_reserved']} bytes with no height tracked")
        )
    alive, on_open = inv["routines_alive"], inv["routines_on_open"]
    for service in sorted(set(alive) | set(on_open)):
        a, o = alive.get(service, 0), on_open.get(service, 0)
        if a != o:
            problems.append((node, f"{a} {service} routines alive, {o} on open connections"))
    problems += [
        (node, f"parked peer {label} still holds {n} header ranges")
        for label, n in inv["parked_holding"].items()
        if n
    ]
    evidence = ("" if node is None else f"node {node}: ") + (
        f"ranges queued {queued} assigned {rq['assigned']}; heights tracked {tracked}, "
        f"budget {bs['budget_reserved']} B; charged {inv['bytes_charged']} "
        f"released {inv['bytes_released']}; routines {sum(alive.values())}"
    )
    return _check(NO_STRANDED_WORK, evidence, problems)


# ---------------------------------------------------------------------- journals
def _runs(rows: Iterable[Doc]) -> dict[tuple[Any, Any], list[Doc]]:
    """Rows by (node, boot_id): a restarted node's runs are counted apart."""
    out: dict[tuple[Any, Any], list[Doc]] = {}
    for row in rows:
        out.setdefault((row.get("node"), row.get("boot_id")), []).append(row)
    return out


def panics_match(rows: Iterable[Doc]) -> Check:
    """In each node's journal (each run of it), routine panics = injected panic faults.

    A panic nobody injected is a bug in a routine; an injected one that never happened is a
    fault that did not take. ``rows`` are journal rows, from any number of nodes when they
    carry ``node`` (as :meth:`Cluster.journal` gives them).
    """
    problems: list[tuple[NodeKey | None, str]] = []
    total = 0
    for (node, _boot), run in _runs(rows).items():
        injected = [
            r
            for r in run
            if (r["table"], r["event"]) == ("fault", "injected")
            and r["fields"].get("kind") == "panic"
        ]
        panicked = [r for r in run if (r["table"], r["event"]) == ("routine", "panicked")]
        total += len(panicked)
        if len(injected) != len(panicked):
            seen = "; ".join(
                f"{r['service']} of {r['peer']}: {r['fields'].get('error')}" for r in panicked[:5]
            )
            problems.append(
                (node, f"{len(panicked)} panics, {len(injected)} injected ({seen or 'none'})")
            )
    return _check(PANICS_MATCH, f"{total} panics in the journals", problems)


def _misbehavior(rows: Iterable[Doc]) -> list[Doc]:
    return [r for r in rows if (r["table"], r["event"]) == ("misbehavior", "recorded")]


def honest_not_punished(rows: Iterable[Doc], honest: Collection[str]) -> Check:
    """No journal row records an honest peer (``honest``: their labels) disconnected for
    misbehavior."""
    records = _misbehavior(rows)
    problems: list[tuple[NodeKey | None, str]] = [
        (
            r.get("node"),
            f"disconnected honest peer {r['peer']} for {r['service']} {r['fields'].get('reason')}"
            f": {r['fields'].get('detail')}",
        )
        for r in records
        if r["peer"] in honest and r["fields"].get("action") == "disconnected"
    ]
    return _check(HONEST_KEPT, f"{len(records)} misbehavior records", problems)


def hostile_recorded(
    rows: Iterable[Doc], hostile: Collection[str], honest_nodes: Collection[Any] | None = None
) -> Check:
    """Every hostile peer (``hostile``: their labels) is in at least one misbehavior record
    of an honest node (``honest_nodes``: the rows' ``node`` values; None: any row)."""
    records = [
        r for r in _misbehavior(rows) if honest_nodes is None or r.get("node") in honest_nodes
    ]
    by_peer = Counter(r["peer"] for r in records)
    problems: list[tuple[NodeKey | None, str]] = [
        (None, f"no honest node recorded hostile peer {label}")
        for label in hostile
        if not by_peer[label]
    ]
    evidence = ", ".join(f"{label}: {by_peer[label]} records" for label in hostile)
    return _check(HOSTILE_RECORDED, evidence or "no hostile peer", problems)


# ---------------------------------------------------------------------- on a live cluster
async def check_cluster(cluster: Cluster, *, settle: float = 30.0) -> list[Check]:
    """Every invariant on a live ``cluster``, one :class:`Check` each (:data:`INVARIANTS`).

    The snapshot checks (converged, no stranded work) are asked again until they hold or
    ``settle`` seconds pass, since a cluster just healed or resumed is still catching up; the
    last verdict is returned. Stores are read while their nodes run (read-only, beside the
    writer). Call it when the cluster should be idle: after :meth:`Cluster.converged`, with
    no fault in progress.
    """
    honest = [i for i in cluster.honest if i in cluster.running]
    deadline = time.monotonic() + settle
    while True:
        snaps = await cluster.snapshots(cluster.running)
        live = [
            same_best_chain({i: s for i, s in snaps.items() if i in honest}),
            _all(NO_STRANDED_WORK, [no_stranded_work(s, i) for i, s in sorted(snaps.items())]),
        ]
        if all(c.ok for c in live) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    stores = [
        await asyncio.to_thread(store_sound, cluster.node(i).store_path, i) for i in cluster.running
    ]
    rows = await cluster.journal()
    honest_labels = {cluster.label(i) for i in cluster.honest}
    hostile_labels = [cluster.label(i) for i in cluster.hostile]
    return [
        live[0],
        _all(STORE_SOUND, stores),
        no_block_lost(cluster.kills),
        live[1],
        panics_match(rows),
        honest_not_punished(rows, honest_labels),
        hostile_recorded(rows, hostile_labels, set(cluster.honest)),
    ]


def _all(invariant: str, checks: list[Check]) -> Check:
    """One check of ``invariant`` from one per node."""
    evidence = "; ".join(f"{c.evidence}" for c in checks) or "no node"
    return Check(invariant, evidence, tuple(v for c in checks for v in c.violations))


def format_checks(checks: Iterable[Check]) -> str:
    """One line per invariant (``ok`` or ``FAIL`` and what was checked), then each violation."""
    return "\n".join(c.format() for c in checks)


def assert_holds(checks: Iterable[Check]) -> None:
    """Raise AssertionError listing every violation of ``checks``; nothing when all hold."""
    checks = list(checks)
    if not all(c.ok for c in checks):
        raise AssertionError("invariants violated:\n" + format_checks(checks))
