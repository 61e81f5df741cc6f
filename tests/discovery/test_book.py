"""Address book: sequence replacement, eviction, dial backoff/cooldown, and sampling."""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address, IPv6Address

import pytest

from node_core.discovery.book import AddressBook, BookEntry, Source
from node_core.discovery.records import make_record, peers_payload, record_wire
from node_core.identity import Identity
from node_core.protocol.discovery import (
    MAX_DISCOVERY_MESSAGE_BYTES,
    MAX_PEERS_RECORDS,
    Peers,
    SignedNodeRecord,
    SocketAddr,
    encode_discovery,
)

NOW_UNIX = 1_750_000_000.0
CHAIN = b"\x07" * 32
SELF = Identity.from_seed(b"\xff" * 32)
_IDS: dict[int, Identity] = {}


def ident(i: int) -> Identity:
    if i not in _IDS:
        _IDS[i] = Identity.from_seed(i.to_bytes(32, "big"))
    return _IDS[i]


def rec(
    i: int,
    *,
    seq: int = 1,
    services: tuple[str, ...] = ("discovery",),
    addrs: tuple[SocketAddr, ...] | None = None,
    ttl: int = 3600,
    port: int = 20_000,
) -> SignedNodeRecord:
    return make_record(
        ident(i),
        addrs=addrs if addrs is not None else (SocketAddr(IPv4Address("127.0.0.1"), port + i),),
        services=services,
        network_id=4,
        chain_id=CHAIN,
        protocol_min=1,
        protocol_max=1,
        sequence=seq,
        now_unix=NOW_UNIX,
        ttl_secs=ttl,
    )


def book(**kwargs: float) -> AddressBook:
    return AddressBook(self_id=SELF.node_id, **kwargs)  # type: ignore[arg-type]


def put(b: AddressBook, signed: SignedNodeRecord, now: float, source: Source = "gossip") -> bool:
    return b.add(signed, signed.record, source=source, now=now)


def entry(b: AddressBook, i: int) -> BookEntry:
    e = b.get(ident(i).node_id)
    assert e is not None
    return e


def ids(entries: list[BookEntry]) -> list[bytes]:
    return [e.node_id for e in entries]


def dialable(b: AddressBook, now: float, exclude: tuple[bytes, ...] = ()) -> list[bytes]:
    return ids(b.dialable(now, now_unix=NOW_UNIX, exclude=exclude))


# --- adding records ------------------------------------------------------------------------


def test_add_new_entry() -> None:
    b = book()
    assert put(b, rec(1), now=10.0, source="bootstrap")
    assert len(b) == 1
    assert ident(1).node_id in b
    e = entry(b, 1)
    assert (e.source, e.first_seen, e.last_seen) == ("bootstrap", 10.0, 10.0)
    assert (e.failures, e.last_dial_attempt, e.last_success) == (0, None, None)
    assert b.entries() == [e]


def test_own_record_is_ignored() -> None:
    b = book()
    mine = make_record(
        SELF,
        addrs=(SocketAddr(IPv4Address("127.0.0.1"), 1),),
        services=(),
        network_id=4,
        chain_id=CHAIN,
        protocol_min=1,
        protocol_max=1,
        sequence=1,
        now_unix=NOW_UNIX,
    )
    assert not put(b, mine, now=1.0)
    assert len(b) == 0


def test_higher_sequence_replaces_and_keeps_dial_history() -> None:
    b = book()
    put(b, rec(1, seq=5), now=1.0, source="bootstrap")
    b.dial_failed(ident(1).node_id, now=2.0)
    newer = rec(1, seq=6, port=30_000)
    assert put(b, newer, now=3.0, source="hello")
    e = entry(b, 1)
    assert e.signed == newer and e.record == newer.record
    assert e.wire == record_wire(newer)  # the cached encoding follows the record
    assert e.record.direct_addrs[0].port == 30_001
    assert (e.source, e.first_seen, e.last_seen, e.failures) == ("hello", 1.0, 3.0, 1)


@pytest.mark.parametrize("seq", [5, 4, 0])
def test_equal_or_lower_sequence_only_refreshes(seq: int) -> None:
    b = book()
    original = rec(1, seq=5)
    put(b, original, now=1.0)
    # Same node, different content: still must not replace without a higher sequence.
    assert not put(b, rec(1, seq=seq, port=40_000), now=7.0, source="hello")
    e = entry(b, 1)
    assert e.signed == original
    assert (e.source, e.last_seen) == ("gossip", 7.0)


def test_last_seen_never_moves_backwards() -> None:
    b = book()
    put(b, rec(1), now=10.0)
    put(b, rec(1), now=5.0)
    assert entry(b, 1).last_seen == 10.0


def test_add_rejects_bad_arguments() -> None:
    b = book()
    with pytest.raises(ValueError):
        put(b, rec(1), now=1.0, source="rumour")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        b.add(rec(1), rec(2).record, source="gossip", now=1.0)
    with pytest.raises(ValueError):
        AddressBook(self_id=SELF.node_id, capacity=0)
    with pytest.raises(ValueError):
        AddressBook(self_id=SELF.node_id, backoff_base=-1.0)


def test_eviction_at_capacity_drops_least_recently_seen() -> None:
    b = book(capacity=3)
    for i, t in ((1, 1.0), (2, 2.0), (3, 3.0)):
        put(b, rec(i), now=t)
    put(b, rec(1), now=4.0)  # refresh: 2 is now the stalest
    assert put(b, rec(4), now=5.0)
    assert len(b) == 3
    assert b.get(ident(2).node_id) is None
    assert {e.node_id for e in b.entries()} == {ident(i).node_id for i in (1, 3, 4)}
    # Updating a known node at capacity never evicts anyone.
    assert put(b, rec(3, seq=2), now=6.0)
    assert len(b) == 3 and b.get(ident(1).node_id) is not None


def test_capacity_is_never_exceeded() -> None:
    b = book(capacity=10)
    for i in range(1, 50):
        put(b, rec(i), now=float(i))
        assert len(b) <= 10
    assert {e.node_id for e in b.entries()} == {ident(i).node_id for i in range(40, 50)}


def test_remove_and_prune_expired() -> None:
    b = book()
    put(b, rec(1, ttl=60), now=1.0)
    put(b, rec(2, ttl=3600), now=1.0)
    assert b.prune_expired(NOW_UNIX + 59) == 0
    assert b.prune_expired(NOW_UNIX + 60) == 1
    assert b.get(ident(1).node_id) is None
    assert b.remove(ident(2).node_id)
    assert not b.remove(ident(2).node_id)
    assert len(b) == 0


# --- dialing -------------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_caps() -> None:
    b = book()  # defaults: 2 s base, 60 s cap
    put(b, rec(1), now=0.0)
    node = ident(1).node_id
    seen = []
    for n in range(1, 9):
        b.dial_failed(node, now=100.0)
        e = entry(b, 1)
        assert e.failures == n
        seen.append(e.backoff_until - 100.0)
    assert seen == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_backoff_exponent_is_capped_at_ten() -> None:
    b = book(backoff_base=1.0, backoff_max=1e9)
    assert [b.backoff_for(n) for n in (0, 1, 2, 11, 12, 50)] == [
        0.0,
        1.0,
        2.0,
        1024.0,
        1024.0,
        1024.0,
    ]


def test_backoff_blocks_dialing_until_it_expires() -> None:
    b = book()
    put(b, rec(1), now=0.0)
    node = ident(1).node_id
    b.dial_started(node, now=10.0)
    assert entry(b, 1).last_dial_attempt == 10.0
    b.dial_failed(node, now=10.0)
    b.dial_failed(node, now=12.0)  # second failure: 4 s
    assert dialable(b, 15.9) == []
    assert dialable(b, 16.0) == [node]


def test_success_resets_failures_and_backoff() -> None:
    b = book()
    put(b, rec(1), now=0.0)
    node = ident(1).node_id
    for _ in range(4):
        b.dial_failed(node, now=1.0)
    assert dialable(b, 2.0) == []
    b.dial_succeeded(node, now=2.0)
    e = entry(b, 1)
    assert (e.failures, e.backoff_until, e.last_success) == (0, 0.0, 2.0)
    assert dialable(b, 2.0) == [node]
    b.dial_failed(node, now=3.0)  # the next failure starts again from the base
    assert entry(b, 1).backoff_until == 5.0


def test_short_lived_exchange_cools_down_for_sixty_seconds() -> None:
    b = book()
    put(b, rec(1), now=0.0)
    node = ident(1).node_id
    b.mark_short_lived(node, now=100.0)
    assert dialable(b, 159.9) == []
    assert dialable(b, 160.0) == [node]
    custom = book(short_lived_cooldown=5.0)
    put(custom, rec(1), now=0.0)
    custom.mark_short_lived(node, now=100.0)
    assert dialable(custom, 105.0) == [node]


def test_unknown_ids_are_ignored_by_dial_bookkeeping() -> None:
    b = book()
    stranger = ident(99).node_id
    b.dial_started(stranger, 1.0)
    b.dial_failed(stranger, 1.0)
    b.dial_succeeded(stranger, 1.0)
    b.mark_short_lived(stranger, 1.0)
    assert len(b) == 0


def test_dialable_filters() -> None:
    b = book()
    put(b, rec(1), now=1.0)
    put(b, rec(2, ttl=10), now=1.0)
    put(b, rec(3, addrs=(SocketAddr(IPv4Address("0.0.0.0"), 5),)), now=1.0)
    put(b, rec(4, addrs=(SocketAddr(IPv6Address("ff02::1"), 5),)), now=1.0)
    put(b, rec(5), now=1.0)
    assert set(dialable(b, 2.0)) == {ident(i).node_id for i in (1, 2, 5)}
    # Expiry is judged on the wall clock.
    assert set(ids(b.dialable(2.0, now_unix=NOW_UNIX + 10, exclude=()))) == {
        ident(i).node_id for i in (1, 5)
    }
    # Connected or in-flight ids are excluded.
    assert dialable(b, 2.0, exclude=(ident(1).node_id, ident(2).node_id)) == [ident(5).node_id]


def test_dialable_order() -> None:
    b = book()
    for i, seen in ((1, 1.0), (2, 5.0), (3, 3.0), (4, 4.0), (5, 2.0)):
        put(b, rec(i), now=seen)
    b.dial_failed(ident(2).node_id, now=0.0)  # 1 failure, backoff over by t=100
    b.dial_failed(ident(4).node_id, now=0.0)
    b.dial_failed(ident(4).node_id, now=0.0)
    b.dial_failed(ident(3).node_id, now=0.0)
    # Never-failed first (most recently seen first), then by failures, then recency.
    assert dialable(b, 100.0) == [ident(i).node_id for i in (5, 1, 2, 3, 4)]


# --- sampling ------------------------------------------------------------------------------


def _filled(n: int, services: tuple[str, ...] = ("discovery",)) -> AddressBook:
    b = book()
    for i in range(1, n + 1):
        put(b, rec(i, services=services), now=float(i))
    return b


def _sample(
    b: AddressBook,
    limit: int,
    rng: random.Random,
    wanted: tuple[str, ...] = (),
    exclude: tuple[bytes, ...] = (),
) -> list[bytes]:
    out = b.sample(limit, wanted_services=wanted, exclude=exclude, rng=rng)
    return [s.record.node_id for s in out]


def test_sample_limit() -> None:
    b = _filled(50)
    rng = random.Random(1)
    assert len(_sample(b, 10, rng)) == 10
    assert len(_sample(b, 1000, rng)) == MAX_PEERS_RECORDS
    assert _sample(b, 0, rng) == []
    assert len(_sample(_filled(3), 10, rng)) == 3
    picked = _sample(b, 32, rng)
    assert len(set(picked)) == len(picked)


def test_sample_honours_exclusions() -> None:
    b = _filled(40)
    excluded = tuple(ident(i).node_id for i in range(1, 31))
    for seed in range(20):
        picked = _sample(b, 32, random.Random(seed), exclude=excluded)
        assert sorted(picked) == sorted(ident(i).node_id for i in range(31, 41))


def test_sample_finds_the_few_eligible_records_beyond_its_first_draw() -> None:
    # 100 records, 90 excluded: the first random draw (twice the limit) cannot hold 32
    # eligible ones, so the whole book is visited; every eligible record comes back.
    b = _filled(100)
    excluded = tuple(ident(i).node_id for i in range(1, 91))
    for seed in range(10):
        picked = _sample(b, 32, random.Random(seed), exclude=excluded)
        assert sorted(picked) == sorted(ident(i).node_id for i in range(91, 101))


def test_sample_honours_wanted_services() -> None:
    b = book()
    for i in range(1, 11):
        put(b, rec(i, services=("discovery",)), now=1.0)
    for i in range(11, 16):
        put(b, rec(i, services=("discovery", "block_sync")), now=1.0)
    put(b, rec(16, services=("block_sync",)), now=1.0)
    rng = random.Random(3)
    both = _sample(b, 32, rng, wanted=("block_sync", "discovery"))
    assert sorted(both) == sorted(ident(i).node_id for i in range(11, 16))
    assert sorted(_sample(b, 32, rng, wanted=("block_sync",))) == sorted(
        ident(i).node_id for i in range(11, 17)
    )
    assert _sample(b, 32, rng, wanted=("header_sync",)) == []
    assert len(_sample(b, 32, rng)) == 16


def test_sample_is_roughly_uniform() -> None:
    b = _filled(100)
    rng = random.Random(42)
    counts: Counter[bytes] = Counter()
    first_ten = {ident(i).node_id for i in range(1, 11)}
    always_first = True
    trials = 2000
    for _ in range(trials):
        picked = _sample(b, 10, rng)
        counts.update(picked)
        always_first &= set(picked) == first_ten
    assert not always_first
    # Each node's expected count is 2000 * 10 / 100 = 200 (binomial sd ~13.4).
    assert len(counts) == 100
    assert min(counts.values()) > 140
    assert max(counts.values()) < 260
    # The first and last thirds of the book are picked about equally often.
    early = sum(counts[ident(i).node_id] for i in range(1, 34))
    late = sum(counts[ident(i).node_id] for i in range(68, 101))
    assert abs(early - late) < 0.1 * (early + late)


def test_sample_is_deterministic_for_a_seed() -> None:
    b = _filled(60)
    assert _sample(b, 12, random.Random(9)) == _sample(b, 12, random.Random(9))


def test_sample_skips_expired_records_when_given_the_time() -> None:
    b = book()
    put(b, rec(1, ttl=10), now=1.0)
    put(b, rec(2, ttl=3600), now=1.0)
    out = b.sample(32, wanted_services=(), exclude=(), rng=random.Random(0), now_unix=NOW_UNIX + 10)
    assert [s.record.node_id for s in out] == [ident(2).node_id]


def test_sample_always_fits_one_peers_message() -> None:
    big_addrs = tuple(SocketAddr(IPv6Address(f"2001:db8::{i + 1}"), 9000) for i in range(8))
    big_services = tuple(f"{i:02d}" + "s" * 62 for i in range(32))
    b = book()
    for i in range(1, 41):
        put(b, rec(i, addrs=big_addrs, services=big_services), now=1.0)
    out = b.sample(32, wanted_services=(), exclude=(), rng=random.Random(0))
    assert 0 < len(out) < 32
    assert len(encode_discovery(Peers(tuple(out)))) <= MAX_DISCOVERY_MESSAGE_BYTES
    # Small records are not trimmed.
    small = _filled(40)
    assert len(small.sample(32, wanted_services=(), exclude=(), rng=random.Random(0))) == 32


def test_a_peers_answer_joined_from_cached_records_is_the_codecs_encoding() -> None:
    # The node answers GetPeers with each entry's wire bytes joined (no re-encoding); the
    # bytes must be exactly what the codec writes for the same records, in every size case.
    big_addrs = tuple(SocketAddr(IPv6Address(f"2001:db8::{i + 1}"), 9000) for i in range(8))
    big_services = tuple(f"{i:02d}" + "s" * 62 for i in range(32))
    big = book()
    for i in range(1, 41):
        put(big, rec(i, addrs=big_addrs, services=big_services), now=1.0)
    for b, limit in (
        (_filled(40), 32),
        (_filled(40), 5),
        (_filled(3), 32),
        (big, 32),
        (book(), 32),
    ):
        entries = b.sample_entries(limit, wanted_services=(), exclude=(), rng=random.Random(0))
        payload = peers_payload([e.wire for e in entries])
        assert payload == encode_discovery(Peers(tuple(e.signed for e in entries)))
        assert len(payload) <= MAX_DISCOVERY_MESSAGE_BYTES


def test_sample_entries_and_sample_agree() -> None:
    b = _filled(60)
    entries = b.sample_entries(20, wanted_services=(), exclude=(), rng=random.Random(4))
    records = b.sample(20, wanted_services=(), exclude=(), rng=random.Random(4))
    assert [e.signed for e in entries] == records
    assert all(e.wire == record_wire(e.signed) for e in entries)
