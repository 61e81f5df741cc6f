"""CancelScope: the connection/service token tree (reference §1.9)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from node_core.transport.cancel import CancelScope


def test_new_scope_is_not_cancelled() -> None:
    scope = CancelScope("conn")
    assert not scope.cancelled
    assert scope.reason is None
    assert scope.reason_or("fallback") == "fallback"


def test_cancel_sets_reason_and_returns_first() -> None:
    scope = CancelScope("conn")
    assert scope.cancel("peer went away") is True
    assert scope.cancelled
    assert scope.reason == "peer went away"
    assert scope.reason_or("fallback") == "peer went away"


def test_default_reason() -> None:
    scope = CancelScope()
    scope.cancel()
    assert scope.reason == "cancelled"


def test_first_reason_wins() -> None:
    scope = CancelScope("conn")
    assert scope.cancel("first")
    assert scope.cancel("second") is False
    assert scope.reason == "first"


def test_child_cancelled_with_parent() -> None:
    conn = CancelScope("conn")
    hs = conn.child("header_sync")
    bs = conn.child("block_sync")
    grandchild = hs.child("helper")
    assert hs.parent is conn
    conn.cancel("disconnect")
    for scope in (hs, bs, grandchild):
        assert scope.cancelled
        assert scope.reason == "disconnect"


def test_parent_untouched_by_child() -> None:
    conn = CancelScope("conn")
    hs = conn.child("header_sync")
    bs = conn.child("block_sync")
    hs.cancel("parked")
    assert hs.cancelled
    assert not conn.cancelled
    assert not bs.cancelled
    # The parent still propagates to its live children afterwards.
    conn.cancel("disconnect")
    assert bs.reason == "disconnect"
    assert hs.reason == "parked"  # a child keeps its own first reason


def test_child_of_cancelled_scope_is_born_cancelled() -> None:
    conn = CancelScope("conn")
    conn.cancel("gone")
    child = conn.child("late")
    assert child.cancelled
    assert child.reason == "gone"
    seen: list[str] = []
    child.on_cancel(seen.append)
    assert seen == ["gone"]


def test_callbacks_run_once_in_order() -> None:
    scope = CancelScope("conn")
    seen: list[str] = []
    scope.on_cancel(lambda r: seen.append(f"a:{r}"))
    scope.on_cancel(lambda r: seen.append(f"b:{r}"))
    scope.cancel("x")
    scope.cancel("y")
    assert seen == ["a:x", "b:x"]


def test_callbacks_isolated_from_each_others_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = CancelScope("conn")
    child = scope.child("svc")
    seen: list[str] = []

    def boom(_reason: str) -> None:
        raise RuntimeError("callback bug")

    scope.on_cancel(seen.append)
    scope.on_cancel(boom)
    scope.on_cancel(lambda r: seen.append(r.upper()))
    with caplog.at_level(logging.ERROR, logger="node_core.transport.cancel"):
        assert scope.cancel("bye") is True  # does not raise
    assert seen == ["bye", "BYE"]
    assert child.cancelled
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)


def test_child_callbacks_run_on_parent_cancel() -> None:
    conn = CancelScope("conn")
    svc = conn.child("svc")
    seen: list[str] = []
    svc.on_cancel(lambda r: seen.append(f"svc:{r}"))
    conn.on_cancel(lambda r: seen.append(f"conn:{r}"))
    conn.cancel("shutdown")
    assert sorted(seen) == ["conn:shutdown", "svc:shutdown"]


def test_on_cancel_after_cancel_runs_immediately() -> None:
    scope = CancelScope()
    scope.cancel("done")
    seen: list[str] = []
    scope.on_cancel(seen.append)
    assert seen == ["done"]


def test_cancelled_child_is_detached_from_parent() -> None:
    conn = CancelScope("conn")
    for i in range(100):
        conn.child(f"svc{i}").cancel("parked")
    # Parking and re-escalating many times must not grow the parent's child list.
    assert conn._children == []


async def test_wait_returns_reason() -> None:
    scope = CancelScope("conn")
    waiter = asyncio.create_task(scope.wait())
    await asyncio.sleep(0)  # let the waiter block
    assert not waiter.done()
    scope.cancel("closing")
    assert await asyncio.wait_for(waiter, timeout=5) == "closing"


async def test_wait_on_cancelled_scope_returns_immediately() -> None:
    scope = CancelScope("conn")
    scope.cancel("already")
    assert await asyncio.wait_for(scope.wait(), timeout=5) == "already"


async def test_child_wait_woken_by_parent() -> None:
    conn = CancelScope("conn")
    svc = conn.child("svc")
    waiters = [asyncio.create_task(svc.wait()), asyncio.create_task(svc.wait())]
    await asyncio.sleep(0)
    conn.cancel("disconnect")
    assert await asyncio.wait_for(asyncio.gather(*waiters), timeout=5) == [
        "disconnect",
        "disconnect",
    ]
