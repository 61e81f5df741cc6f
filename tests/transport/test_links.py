"""The link-fault rules and their scheduling arithmetic (node_core/transport/links.py), no I/O."""

from __future__ import annotations

import math

import pytest

from node_core.transport.links import KIB, LinkRule, LinkTable, Pacing, schedule

A, B, C = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32


def test_rules_merge_per_node_and_only_live_rules_are_listed() -> None:
    table = LinkTable(seed=1)
    assert table.rows() == [] and len(table) == 0
    table.partition([A])
    table.delay([A, B], 200, 50)
    table.bandwidth([B], 64)
    assert table.rows() == [
        {"node": A.hex(), "partitioned": True, "delay_ms": 200, "jitter_ms": 50, "kib_per_s": None},
        {"node": B.hex(), "partitioned": False, "delay_ms": 200, "jitter_ms": 50, "kib_per_s": 64},
    ]
    assert table.partitioned(A) and not table.partitioned(B) and not table.partitioned(C)
    assert table.shaping(B) == LinkRule(False, 200, 50, 64)
    assert table.shaping(C) is None
    # A delay of 0 and 0 is no delay: B keeps only its bandwidth, and stays shaped by it.
    table.delay([B], 0, 0)
    assert table.get(B) == LinkRule(kib_per_s=64)


def test_heal_some_or_all() -> None:
    table = LinkTable(seed=1)
    table.partition([A, B])
    table.delay([C], 10)
    assert table.heal([B, bytes([9]) * 32]) == [B]  # an id without a rule is not "healed"
    assert [r["node"] for r in table.rows()] == [A.hex(), C.hex()]
    assert sorted(table.heal()) == [A, C]
    assert table.rows() == [] and table.shaping(C) is None and not table.partitioned(A)


def test_bounds_and_ids_are_checked() -> None:
    table = LinkTable(seed=1)
    with pytest.raises(ValueError):
        table.delay([A], 60_001)
    with pytest.raises(ValueError):
        table.delay([A], 1, -1)
    with pytest.raises(ValueError):
        table.bandwidth([A], 0)
    with pytest.raises(ValueError):
        table.partition([b"short"])
    assert table.rows() == []


def test_delay_holds_each_record_and_never_reorders() -> None:
    rule = LinkRule(delay_ms=200, jitter_ms=150)
    pacing = Pacing()
    due, pacing = schedule(rule, pacing, now=10.0, size=100, jitter=0.0)
    assert due == pytest.approx(10.2)
    # A later record with a shorter draw would overtake: it waits for the earlier one.
    due2, pacing = schedule(rule, pacing, now=10.01, size=100, jitter=-1.0)
    assert due2 == due
    due3, pacing = schedule(rule, pacing, now=10.02, size=100, jitter=1.0)
    assert due3 == pytest.approx(10.37)
    # Jitter larger than the delay never makes a hold negative.
    wide = LinkRule(delay_ms=10, jitter_ms=100)
    due4, _ = schedule(wide, Pacing(), now=5.0, size=1, jitter=-1.0)
    assert due4 == 5.0


def test_pacing_serialises_bytes_at_the_rate() -> None:
    rule = LinkRule(kib_per_s=64)
    pacing = Pacing()
    now = 100.0
    dues = []
    for _ in range(64):  # 64 KiB handed over at once
        due, pacing = schedule(rule, pacing, now=now, size=KIB)
        dues.append(due)
    assert dues == sorted(dues)
    assert dues[0] == pytest.approx(now + 1 / 64)
    assert dues[-1] == pytest.approx(now + 1.0)  # N bytes take N / rate
    # An idle link does not bank credit: after a pause, the next KiB still takes 1/64 s.
    due, pacing = schedule(rule, pacing, now=200.0, size=KIB)
    assert due == pytest.approx(200.0 + 1 / 64)


def test_pacing_then_delay_and_a_healed_link_drains_in_order() -> None:
    rule = LinkRule(delay_ms=100, kib_per_s=1)
    due, pacing = schedule(rule, Pacing(), now=0.0, size=KIB)
    assert due == pytest.approx(1.1)  # one second on the link, then 100 ms on the wire
    healed, pacing = schedule(None, pacing, now=0.5, size=10)
    assert healed == due  # no rule, but behind what is still held
    later, _ = schedule(None, pacing, now=2.0, size=10)
    assert later == 2.0
    assert Pacing().released == -math.inf


def test_the_same_seed_draws_the_same_jitter() -> None:
    rule = LinkRule(delay_ms=50, jitter_ms=50)

    def draws(seed: int) -> list[float]:
        table = LinkTable(seed)
        return [table.jitter(rule) for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert all(-1.0 <= d <= 1.0 for d in draws(7))
    assert LinkTable(1).jitter(LinkRule(delay_ms=50)) == 0.0  # no jitter: no draw
