"""Tests for the event journal ring: ordering, eviction, fan-out isolation and waiting."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import orjson
import pytest

from node_core.observe.journal import Journal, JournalEvent


def test_emit_assigns_gap_free_seq_and_stores_fields() -> None:
    j = Journal("n1")
    assert j.last_seq == 0
    assert len(j) == 0
    a = j.emit("conn", "accepted", peer="peer:00112233aabbccdd", conn=1, direction="inbound")
    b = j.emit("routine", "routine.started", service="discovery")
    assert (a.seq, b.seq) == (1, 2)
    assert j.last_seq == 2
    assert a.table == "conn" and a.event == "accepted"
    assert a.peer == "peer:00112233aabbccdd" and a.service is None
    assert dict(a.fields) == {"conn": 1, "direction": "inbound"}
    assert b.mono >= a.mono
    assert dict(b.fields) == {}


def test_fields_are_read_only() -> None:
    j = Journal("n1")
    ev = j.emit("fault", "panic.injected", kind="panic")
    with pytest.raises(TypeError):
        ev.fields["kind"] = "other"  # type: ignore[index]


def test_to_dict_is_orjson_serializable() -> None:
    j = Journal("n1")
    ev = j.emit("node", "started", peer=None, ok=True, ratio=0.5, n=3, note=None)
    decoded = orjson.loads(orjson.dumps(ev.to_dict()))
    assert decoded["seq"] == 1
    assert decoded["table"] == "node"
    assert decoded["event"] == "started"
    assert decoded["peer"] is None and decoded["service"] is None
    assert decoded["fields"] == {"ok": True, "ratio": 0.5, "n": 3, "note": None}


def test_ring_evicts_oldest_and_since_reports_what_is_left() -> None:
    j = Journal("n1", capacity=5)
    for i in range(8):
        j.emit("node", "tick", i=i)
    assert j.last_seq == 8
    assert len(j) == 5
    assert j.first_seq == 4
    assert [e.seq for e in j.since(0)] == [4, 5, 6, 7, 8]
    assert [e.seq for e in j.since(6)] == [7, 8]
    assert j.since(8) == []
    assert j.since(100) == []


def test_since_limit_keeps_the_oldest() -> None:
    j = Journal("n1")
    for _ in range(10):
        j.emit("node", "tick")
    assert [e.seq for e in j.since(3, limit=4)] == [4, 5, 6, 7]
    assert j.since(3, limit=0) == []
    assert [e.seq for e in j.since(8, limit=10)] == [9, 10]


def test_find_filters_after_since() -> None:
    j = Journal("n1")
    j.emit("conn", "accepted")
    j.emit("conn", "closed.neutral")
    j.emit("conn", "accepted")
    found = j.find(lambda e: e.event == "accepted")
    assert [e.seq for e in found] == [1, 3]
    assert [e.seq for e in j.find(lambda e: e.event == "accepted", since=1)] == [3]


def test_subscribers_are_called_in_order_and_can_unsubscribe() -> None:
    j = Journal("n1")
    seen_a: list[int] = []
    seen_b: list[int] = []
    unsub_a = j.subscribe(lambda e: seen_a.append(e.seq))
    j.subscribe(lambda e: seen_b.append(e.seq))
    j.emit("node", "one")
    unsub_a()
    unsub_a()  # idempotent
    j.emit("node", "two")
    assert seen_a == [1]
    assert seen_b == [1, 2]


def test_subscriber_may_unsubscribe_itself_during_emit() -> None:
    j = Journal("n1")
    seen: list[int] = []
    unsub: list[object] = []

    def once(ev: JournalEvent) -> None:
        seen.append(ev.seq)
        fn = unsub[0]
        assert callable(fn)
        fn()

    unsub.append(j.subscribe(once))
    other: list[int] = []
    j.subscribe(lambda e: other.append(e.seq))
    j.emit("node", "one")
    j.emit("node", "two")
    assert seen == [1]
    assert other == [1, 2]


def test_failing_subscriber_is_isolated_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    j = Journal("n1")
    seen: list[int] = []

    def broken(ev: JournalEvent) -> None:
        raise RuntimeError("subscriber bug")

    j.subscribe(broken)
    j.subscribe(lambda e: seen.append(e.seq))
    with caplog.at_level(logging.ERROR, logger="node_core.observe.journal"):
        ev = j.emit("node", "tick")
    assert ev.seq == 1
    assert seen == [1]
    assert any("subscriber bug" in (r.exc_text or "") for r in caplog.records)


async def test_wait_for_returns_event_already_in_ring() -> None:
    j = Journal("n1")
    j.emit("conn", "accepted", conn=1)
    j.emit("conn", "accepted", conn=2)
    ev = await j.wait_for(lambda e: e.event == "accepted", timeout=1.0)
    assert ev.fields["conn"] == 1
    ev = await j.wait_for(lambda e: e.event == "accepted", since=1, timeout=1.0)
    assert ev.fields["conn"] == 2


async def test_wait_for_is_resolved_by_a_later_emit_on_the_same_loop() -> None:
    j = Journal("n1")
    j.emit("routine", "routine.exited", cause="normal")
    since = j.last_seq
    loop = asyncio.get_running_loop()
    # call_soon runs only once wait_for has suspended, so this exercises the waiting path.
    loop.call_soon(lambda: j.emit("routine", "routine.started"))
    loop.call_soon(lambda: j.emit("routine", "routine.exited", cause="panic"))
    ev = await j.wait_for(lambda e: e.event == "routine.exited", since=since, timeout=5.0)
    assert ev.seq == 3
    assert ev.fields["cause"] == "panic"


async def test_wait_for_times_out() -> None:
    j = Journal("n1")
    j.emit("node", "tick")
    with pytest.raises(TimeoutError):
        await j.wait_for(lambda e: e.event == "never", timeout=0.05)
    # The waiter is cleaned up: later emits still work and resolve nothing stale.
    j.emit("node", "never")
    assert j.last_seq == 2


async def test_many_waiters_resolve_independently() -> None:
    j = Journal("n1")
    loop = asyncio.get_running_loop()

    def has_i(i: int) -> Callable[[JournalEvent], bool]:
        return lambda e: e.fields.get("i") == i

    # Tasks take their first step (registering the waiter) before the call_soon below runs.
    waits = [asyncio.create_task(j.wait_for(has_i(i), timeout=5.0)) for i in range(5)]
    loop.call_soon(lambda: [j.emit("node", "tick", i=i) for i in reversed(range(5))])
    results = await asyncio.gather(*waits)
    assert [r.fields["i"] for r in results] == [0, 1, 2, 3, 4]
    assert [r.seq for r in results] == [5, 4, 3, 2, 1]


async def test_predicate_error_goes_to_the_waiter_not_the_emitter() -> None:
    j = Journal("n1")
    loop = asyncio.get_running_loop()

    def bad(ev: JournalEvent) -> bool:
        raise KeyError("predicate bug")

    emitted: list[JournalEvent] = []
    loop.call_soon(lambda: emitted.append(j.emit("node", "tick")))
    with pytest.raises(KeyError):
        await j.wait_for(bad, timeout=5.0)
    assert [e.seq for e in emitted] == [1]


async def test_wait_for_resolved_by_emit_from_another_thread() -> None:
    j = Journal("n1")
    loop = asyncio.get_running_loop()

    def start_thread() -> None:
        threading.Thread(target=lambda: j.emit("node", "from_thread", x=1)).start()

    loop.call_soon(start_thread)
    ev = await j.wait_for(lambda e: e.event == "from_thread", timeout=5.0)
    assert ev.fields["x"] == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Journal("n1", capacity=0)
