"""The node's append-only event journal: a fixed-size ring of typed events.

Everything the operator console, the trace writer and the tests learn about what the node did
flows through here, so the journal is the one place that defines event ordering (``seq``).

Invariants:
    * ``seq`` starts at 1 and increases by exactly 1 per ``emit``; it never repeats or skips, so
      a reader holding ``last_seq`` can ask for "everything after" and detect loss (a gap between
      the seq it asked after and the first seq returned means the ring overwrote events).
    * Event with seq ``s`` lives in slot ``(s - 1) % capacity`` and is still present iff
      ``s > last_seq - capacity``. This makes ``since`` O(returned events), not O(ring size).
    * ``emit`` never raises because of a subscriber or a waiter: observers must never be able
      to break the code path they observe.

The journal is loop-confined: emit from the node's event loop thread. ``wait_for`` also copes with
an emit from another thread (it hops to the waiter's loop), which keeps tests that drive a node
from a helper thread honest, but concurrent emits from several threads are not supported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

__all__ = ["FieldValue", "Journal", "JournalEvent"]

_log = logging.getLogger(__name__)

FieldValue = str | int | float | bool | None
"""Scalar field values only: keeps every event orjson-serializable and cheap to copy."""

_EMPTY_FIELDS: Mapping[str, FieldValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One thing the node did, immutable so it can be shared with threads and subscribers.

    Attributes:
        seq: Position in this journal, 1-based, gap-free.
        mono: ``time.monotonic()`` at emit; used for durations and trace ``ts``.
        wall: ``time.time()`` at emit; used only for display to humans.
        table: Trace table / category, e.g. ``"conn"``, ``"routine"``, ``"fault"``.
        event: Event name as in the reference, e.g. ``"closed.neutral"``.
        peer: Peer label ``"peer:<16 hex>"`` or None for node-wide events.
        service: Service name (``"discovery"``, ``"header_sync"`` ...) or None.
        fields: Extra scalar fields, read-only so no subscriber can alter what others see.
    """

    seq: int
    mono: float
    wall: float
    table: str
    event: str
    peer: str | None
    service: str | None
    fields: Mapping[str, FieldValue]

    def to_dict(self) -> dict[str, FieldValue | dict[str, FieldValue]]:
        """Return a plain-dict form (orjson cannot encode ``MappingProxyType``).

        Used by the control API / remote console, which ship events as JSON.
        """
        return {
            "seq": self.seq,
            "mono": self.mono,
            "wall": self.wall,
            "table": self.table,
            "event": self.event,
            "peer": self.peer,
            "service": self.service,
            "fields": dict(self.fields),
        }


@dataclass(slots=True)
class _Waiter:
    """A pending ``wait_for``: resolved by ``emit`` rather than by polling."""

    predicate: Callable[[JournalEvent], bool]
    since: int
    future: asyncio.Future[JournalEvent]
    loop: asyncio.AbstractEventLoop


def _set_result(future: asyncio.Future[JournalEvent], event: JournalEvent) -> None:
    if not future.done():
        future.set_result(event)


def _set_exception(future: asyncio.Future[JournalEvent], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Journal:
    """Fixed-capacity ring of :class:`JournalEvent` with synchronous fan-out.

    Args:
        node_label: Label of the node that owns the journal (shown in traces and the console).
        capacity: Number of most recent events kept; older ones are overwritten. A bounded ring
            keeps memory flat under attacker-driven event rates.
    """

    __slots__ = ("_callbacks", "_capacity", "_last_seq", "_ring", "_waiters", "node_label")

    def __init__(self, node_label: str, capacity: int = 20_000) -> None:
        if capacity < 1:
            raise ValueError(f"journal capacity must be >= 1, got {capacity}")
        self.node_label = node_label
        self._capacity = capacity
        self._ring: list[JournalEvent | None] = [None] * capacity
        self._last_seq = 0
        # A tuple is rebuilt on (un)subscribe so emit iterates without copying and callbacks may
        # unsubscribe themselves mid-fan-out.
        self._callbacks: tuple[Callable[[JournalEvent], None], ...] = ()
        self._waiters: list[_Waiter] = []

    @property
    def capacity(self) -> int:
        """Maximum number of events retained."""
        return self._capacity

    @property
    def last_seq(self) -> int:
        """Seq of the most recent event, 0 before the first emit."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """Seq of the oldest event still in the ring (``last_seq + 1`` when empty)."""
        return max(1, self._last_seq - self._capacity + 1) if self._last_seq else 1

    def __len__(self) -> int:
        return min(self._last_seq, self._capacity)

    def emit(
        self,
        table: str,
        event: str,
        *,
        peer: str | None = None,
        service: str | None = None,
        **fields: FieldValue,
    ) -> JournalEvent:
        """Append an event and notify subscribers and waiters synchronously.

        This is on the hot path (per frame / per message in places), so it only builds the
        dataclass and stores it: no I/O, no formatting. ``**fields`` is already a fresh dict,
        so wrapping it read-only needs no copy.

        Returns:
            The stored event.
        """
        seq = self._last_seq + 1
        ev = JournalEvent(
            seq=seq,
            mono=time.monotonic(),
            wall=time.time(),
            table=table,
            event=event,
            peer=peer,
            service=service,
            fields=MappingProxyType(fields) if fields else _EMPTY_FIELDS,
        )
        self._ring[(seq - 1) % self._capacity] = ev
        self._last_seq = seq
        for callback in self._callbacks:
            try:
                callback(ev)
            except Exception:
                _log.exception(
                    "journal subscriber %r failed on %s/%s seq=%d", callback, table, event, seq
                )
        if self._waiters:
            self._resolve_waiters(ev)
        return ev

    def since(self, seq: int, limit: int | None = None) -> list[JournalEvent]:
        """Events with ``.seq > seq`` still in the ring, oldest first.

        Args:
            seq: Exclusive lower bound; pass the last seq you have seen (0 for everything).
            limit: Keep only the oldest ``limit`` events, so a slow reader pages forward in
                order instead of skipping to the newest.
        """
        start = max(seq + 1, self.first_seq)
        stop = self._last_seq + 1
        if limit is not None:
            stop = min(stop, start + max(limit, 0))
        return [self._at(s) for s in range(start, stop)]

    def find(self, predicate: Callable[[JournalEvent], bool], since: int = 0) -> list[JournalEvent]:
        """All retained events after ``since`` matching ``predicate``, oldest first."""
        return [ev for ev in self.since(since) if predicate(ev)]

    def subscribe(self, callback: Callable[[JournalEvent], None]) -> Callable[[], None]:
        """Call ``callback`` synchronously inside every future ``emit``.

        Callbacks must be quick and must not block: they run on the emitter's hot path.
        An exception in one callback is logged and never reaches the emitter or other callbacks.

        Returns:
            An idempotent unsubscribe function.
        """
        self._callbacks = (*self._callbacks, callback)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            callbacks = list(self._callbacks)
            # Remove by identity: the same callable may be subscribed twice on purpose.
            for i, cb in enumerate(callbacks):
                if cb is callback:
                    del callbacks[i]
                    break
            self._callbacks = tuple(callbacks)

        return unsubscribe

    async def wait_for(
        self,
        predicate: Callable[[JournalEvent], bool],
        *,
        since: int = 0,
        timeout: float = 10.0,
    ) -> JournalEvent:
        """Return the first event with ``seq > since`` that matches ``predicate``.

        The ring is checked first; otherwise a future is registered that ``emit`` resolves, so
        tests wait on the event itself instead of sleeping. There is no await between the ring
        check and the registration, so an emit on the same loop cannot slip through the gap.

        Raises:
            TimeoutError: No matching event within ``timeout`` seconds.
            Exception: Whatever ``predicate`` raised while checking an event.
        """
        for ev in self.since(since):
            if predicate(ev):
                return ev
        loop = asyncio.get_running_loop()
        waiter = _Waiter(predicate, since, loop.create_future(), loop)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        finally:
            # Identity-based removal; the waiter may already be gone if emit resolved it.
            for i, w in enumerate(self._waiters):
                if w is waiter:
                    del self._waiters[i]
                    break

    def _at(self, seq: int) -> JournalEvent:
        ev = self._ring[(seq - 1) % self._capacity]
        assert ev is not None and ev.seq == seq, "journal ring slot out of sync"
        return ev

    def _resolve_waiters(self, ev: JournalEvent) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        remaining: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            if ev.seq <= w.since:
                remaining.append(w)
                continue
            try:
                matched = w.predicate(ev)
            except Exception as exc:  # the waiter asked the question; it gets the error
                self._deliver(w, current, partial(_set_exception, w.future, exc))
                continue
            if matched:
                self._deliver(w, current, partial(_set_result, w.future, ev))
            else:
                remaining.append(w)
        self._waiters = remaining

    @staticmethod
    def _deliver(
        waiter: _Waiter, current: asyncio.AbstractEventLoop | None, resolve: Callable[[], None]
    ) -> None:
        # Futures are not thread-safe: resolve directly only on the waiter's own loop.
        if current is waiter.loop:
            resolve()
        elif not waiter.loop.is_closed():
            waiter.loop.call_soon_threadsafe(resolve)
