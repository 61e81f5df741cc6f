"""The address book: verified node records plus what we learned dialing them.

Invariants:
- Every entry holds a record that was verified before :meth:`AddressBook.add`; the book
  never verifies (signature checks are costly and belong outside any shared-state update).
- At most one entry per node id, never our own, and never more than ``capacity`` entries;
  when full, the entry seen least recently makes room.
- An entry's record only ever moves to a *higher* sequence; an equal or lower sequence just
  proves the node is still around (``last_seen``). Dial history survives a record update,
  because a node re-signing its record says nothing about whether it answers.
- All methods are synchronous and never await, so the book cannot be observed half-updated.

Clocks: ``now`` is the caller's monotonic clock (seen times, dial attempts, backoff,
cooldowns); ``now_unix`` is wall-clock seconds and is used only against a record's
``expires_at_unix_secs``, which the record's author wrote in wall-clock time.

Deviation from the reference: the Rust defaults back off failed dials from 60 s up to 1 h.
Ours start at 2 s and cap at 60 s, because testnets on loopback kill and restart nodes within
seconds and an hour-long backoff would keep a restarted node out of the network for the
rest of a test run. The 60 s short-lived-exchange cooldown is kept as in the reference.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from node_core.discovery.records import record_wire, usable_addrs
from node_core.protocol.discovery import (
    MAX_DISCOVERY_MESSAGE_BYTES,
    MAX_PEERS_RECORDS,
    PEERS_HEADER_BYTES,
    NodeRecord,
    SignedNodeRecord,
    SocketAddr,
)

Source = Literal["bootstrap", "gossip", "hello"]
SOURCES: frozenset[str] = frozenset(get_args(Source))

DEFAULT_CAPACITY = 10_000
DEFAULT_BACKOFF_BASE_SECS = 2.0
DEFAULT_BACKOFF_MAX_SECS = 60.0
DEFAULT_SHORT_LIVED_COOLDOWN_SECS = 60.0
#: :meth:`AddressBook.sample` first draws this many times the limit in random positions.
SAMPLE_PROBE_FACTOR = 2
#: Exponent cap of the backoff, as in the reference (``base * 2**min(n - 1, 10)``).
BACKOFF_MAX_EXPONENT = 10


@dataclass(slots=True)
class BookEntry:
    """One known node.

    Attributes:
        record: The decoded body of ``signed``.
        signed: The record exactly as its author signed it (what we gossip onwards).
        source: How we first learned of the current record: ``bootstrap``, ``gossip`` or
            ``hello`` (the node told us itself).
        first_seen: When the node first entered the book (monotonic).
        last_seen: When any record of this node last reached us (monotonic).
        last_dial_attempt: When we last started dialing it, if ever.
        last_success: When a dial to it last counted as successful, if ever.
        failures: Consecutive failed dials since the last success.
        backoff_until: No dial before this time (monotonic).
        short_lived_until: No dial before this time after a short-lived exchange.
        wire: ``signed`` as a Peers answer carries it, encoded once when the record is
            stored (:func:`node_core.discovery.records.record_wire`).
    """

    record: NodeRecord
    signed: SignedNodeRecord
    source: Source
    first_seen: float
    last_seen: float
    last_dial_attempt: float | None = None
    last_success: float | None = None
    failures: int = 0
    backoff_until: float = 0.0
    short_lived_until: float = 0.0
    wire: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.wire = record_wire(self.signed)

    @property
    def node_id(self) -> bytes:
        return self.record.node_id

    @property
    def usable_addrs(self) -> tuple[SocketAddr, ...]:
        """Addresses worth dialing, in the author's order."""
        return usable_addrs(self.record)

    def offers(self, wanted_services: Sequence[str]) -> bool:
        """True if the record lists every wanted service (an empty list wants nothing)."""
        return all(s in self.record.services for s in wanted_services)


class AddressBook:
    """Known nodes, their dial state, and the sampling that feeds Peers replies."""

    __slots__ = (
        "_backoff_base",
        "_backoff_max",
        "_capacity",
        "_entries",
        "_self_id",
        "_short_lived_cooldown",
    )

    def __init__(
        self,
        *,
        self_id: bytes,
        capacity: int = DEFAULT_CAPACITY,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECS,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECS,
        short_lived_cooldown: float = DEFAULT_SHORT_LIVED_COOLDOWN_SECS,
    ) -> None:
        """Create an empty book.

        Args:
            self_id: Our own node id; records authored by it are never stored.
            capacity: Maximum number of entries (at least 1).
            backoff_base: Backoff after the first failed dial, in seconds.
            backoff_max: Longest backoff, in seconds.
            short_lived_cooldown: Dial cooldown after a short-lived exchange, in seconds.

        Raises:
            ValueError: On a non-positive capacity or negative durations.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if backoff_base < 0 or backoff_max < 0 or short_lived_cooldown < 0:
            raise ValueError("backoff and cooldown durations must not be negative")
        self._self_id = bytes(self_id)
        self._capacity = capacity
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._short_lived_cooldown = short_lived_cooldown
        # Insertion-ordered: sampling and iteration are deterministic for a given history.
        self._entries: dict[bytes, BookEntry] = {}

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def get(self, node_id: bytes) -> BookEntry | None:
        return self._entries.get(node_id)

    def entries(self) -> list[BookEntry]:
        """A snapshot list; mutating the book afterwards does not change it."""
        return list(self._entries.values())

    # --- records ---------------------------------------------------------------------------

    def add(
        self, signed: SignedNodeRecord, record: NodeRecord, *, source: Source, now: float
    ) -> bool:
        """Store an already verified record.

        Args:
            signed: The record as received.
            record: Its verified body (normally ``signed.record``).
            source: ``bootstrap``, ``gossip`` or ``hello``.
            now: Monotonic time.

        Returns:
            True if the node is new or its record moved to a higher sequence; False if the
            record was ours or no newer than what we hold (then only ``last_seen`` moves).

        Raises:
            ValueError: On an unknown ``source`` or a ``record`` that is not ``signed``'s body.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown record source {source!r}")
        if record.node_id != signed.record.node_id:
            raise ValueError("record does not belong to the signed record")
        node_id = record.node_id
        if node_id == self._self_id:
            return False
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.last_seen = max(entry.last_seen, now)
            if record.sequence <= entry.record.sequence:
                return False
            entry.record = record
            entry.signed = signed
            entry.wire = record_wire(signed)
            entry.source = source
            return True
        if len(self._entries) >= self._capacity:
            self._evict_oldest()
        self._entries[node_id] = BookEntry(
            record=record, signed=signed, source=source, first_seen=now, last_seen=now
        )
        return True

    def _evict_oldest(self) -> None:
        # A linear scan is fine: it runs only when a *new* node arrives at a full book, and
        # 10 000 comparisons cost well under a millisecond.
        oldest = min(self._entries.values(), key=lambda e: e.last_seen)
        del self._entries[oldest.node_id]

    def remove(self, node_id: bytes) -> bool:
        """Forget a node; True if it was known."""
        return self._entries.pop(node_id, None) is not None

    def prune_expired(self, now_unix: float) -> int:
        """Drop entries whose record has expired; returns how many were dropped."""
        expired = [k for k, e in self._entries.items() if e.record.expires_at_unix_secs <= now_unix]
        for k in expired:
            del self._entries[k]
        return len(expired)

    # --- dialing ---------------------------------------------------------------------------

    def dialable(
        self, now: float, *, now_unix: float, exclude: Collection[bytes]
    ) -> list[BookEntry]:
        """Entries worth dialing now, best first.

        An entry qualifies if it is not excluded (connected or in flight), not backing off,
        not cooling down after a short-lived exchange, not expired, and has a usable address.
        Order: fewest consecutive failures first (so never-failed nodes lead), then the most
        recently seen.

        Args:
            now: Monotonic time.
            now_unix: Wall-clock seconds, compared with record expiry.
            exclude: Node ids not to return.
        """
        ready = [
            e
            for e in self._entries.values()
            if e.node_id not in exclude
            and e.backoff_until <= now
            and e.short_lived_until <= now
            and e.record.expires_at_unix_secs > now_unix
            and e.usable_addrs
        ]
        ready.sort(key=lambda e: (e.failures, -e.last_seen))
        return ready

    def dial_started(self, node_id: bytes, now: float) -> None:
        """Record a dial attempt (unknown ids are ignored: the entry may have been evicted)."""
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.last_dial_attempt = now

    def dial_succeeded(self, node_id: bytes, now: float) -> None:
        """A dial counted as successful: forget past failures and any backoff."""
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.last_success = now
            entry.failures = 0
            entry.backoff_until = 0.0

    def dial_failed(self, node_id: bytes, now: float) -> None:
        """A dial failed: back off exponentially, ``base * 2**min(failures - 1, 10)``, capped."""
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.failures += 1
            entry.backoff_until = now + self.backoff_for(entry.failures)

    def backoff_for(self, failures: int) -> float:
        """Backoff after ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, BACKOFF_MAX_EXPONENT)
        return float(min(self._backoff_max, self._backoff_base * 2**exponent))

    def forgive(self, node_id: bytes) -> bool:
        """Forget the node's failed dials, backoff and short-lived cooldown, so it is dialable
        at once; True if the node is in the book.

        For a link fault just lifted (a partition healed): those failures were the fault's
        doing, not the node's, and waiting out their backoff would only delay the reconnect.
        """
        entry = self._entries.get(node_id)
        if entry is None:
            return False
        entry.failures = 0
        entry.backoff_until = 0.0
        entry.short_lived_until = 0.0
        return True

    def mark_short_lived(self, node_id: bytes, now: float) -> None:
        """The node's connection only lasted one discovery exchange: leave it alone a while.

        Without this, a discovery-only peer that disconnects right after the exchange would
        be redialed at once, over and over.
        """
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.short_lived_until = now + self._short_lived_cooldown

    # --- gossip ----------------------------------------------------------------------------

    def sample(
        self,
        limit: int,
        *,
        wanted_services: Sequence[str],
        exclude: Collection[bytes],
        rng: random.Random,
        now_unix: float | None = None,
        max_payload_bytes: int = MAX_DISCOVERY_MESSAGE_BYTES,
    ) -> list[SignedNodeRecord]:
        """A uniform random sample of records for a Peers reply (see :meth:`sample_entries`)."""
        entries = self.sample_entries(
            limit,
            wanted_services=wanted_services,
            exclude=exclude,
            rng=rng,
            now_unix=now_unix,
            max_payload_bytes=max_payload_bytes,
        )
        return [e.signed for e in entries]

    def sample_entries(
        self,
        limit: int,
        *,
        wanted_services: Sequence[str],
        exclude: Collection[bytes],
        rng: random.Random,
        now_unix: float | None = None,
        max_payload_bytes: int = MAX_DISCOVERY_MESSAGE_BYTES,
    ) -> list[BookEntry]:
        """A uniform random sample of entries for a Peers reply (their ``wire`` is the answer).

        Every eligible record has the same chance, so a requester cannot steer which nodes it
        learns about by asking repeatedly: the records are visited in a random order and the
        first ``limit`` eligible ones are taken (a prefix of a random permutation, filtered,
        is a uniform sample of what passes the filter). Only as much of the permutation as
        needed is drawn: :data:`SAMPLE_PROBE_FACTOR` times the limit first, the whole book
        only if that prefix held too few eligible records. With 1,000 peers each asking every
        10 s, a full pass per request (the reservoir this replaced) cost the node's loop
        about 2 ms a request (``bench/scale_peers.py``).

        Args:
            limit: Records requested; at most :data:`MAX_PEERS_RECORDS` are returned.
            wanted_services: Only records offering all of these (empty: any record).
            exclude: Node ids the requester already knows (and typically its own).
            rng: Randomness source (seed it in tests).
            now_unix: If given, expired records are skipped; nobody can use them.
            max_payload_bytes: The sample is trimmed so that a Peers message carrying it
                stays within this many bytes; records of maximal size would not fit 32 to a
                message, and a reply we cannot encode is worse than a shorter one.
        """
        k = min(limit, MAX_PEERS_RECORDS)
        if k <= 0 or not self._entries:
            return []
        entries = list(self._entries.values())
        excluded = exclude if isinstance(exclude, set | frozenset) else set(exclude)
        # The common request wants no service and knows the expiry: test only what it asks.
        wanted = tuple(wanted_services)
        horizon = float("-inf") if now_unix is None else now_unix

        def eligible(e: BookEntry) -> bool:
            return (
                e.record.expires_at_unix_secs > horizon
                and e.record.node_id not in excluded
                and (not wanted or e.offers(wanted))
            )

        n = len(entries)
        probe = SAMPLE_PROBE_FACTOR * k
        picked: list[BookEntry] = []
        if probe < n:
            # Distinct positions drawn one at a time (a repeat is drawn again): the same prefix
            # of a uniform random permutation as ``rng.sample(range(n), probe)``, without its
            # pure-Python index arithmetic (61 of the 98 us a sample took at 1,000 records).
            rand = rng.random
            drawn: set[int] = set()
            while len(drawn) < probe and len(picked) < k:
                i = int(rand() * n)
                if i not in drawn:
                    drawn.add(i)
                    if eligible(entries[i]):
                        picked.append(entries[i])
        if len(picked) < k:  # a small book, or the prefix was too short: visit all of it
            order = rng.sample(range(n), n)
            picked = [e for e in (entries[i] for i in order) if eligible(e)][:k]
        out: list[BookEntry] = []
        used = PEERS_HEADER_BYTES
        for entry in picked:
            size = len(entry.wire)
            if used + size <= max_payload_bytes:
                out.append(entry)
                used += size
        return out
