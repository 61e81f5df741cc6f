"""Cancellation scopes: a connection scope and per-service child scopes (reference §1.9).

Invariants:
- Cancelling a scope cancels all its children; cancelling a child never touches its parent.
- The first reason given wins and is the one reported (``reason_or``), whoever cancels later.
- Cancellation is synchronous and idempotent; callbacks run once, in registration order, and
  an exception in one callback never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class CancelScope:
    """A cancellation token with a first-writer-wins reason and child scopes."""

    __slots__ = ("_callbacks", "_children", "_event", "_reason", "cause", "name", "parent")

    def __init__(self, name: str = "", parent: CancelScope | None = None) -> None:
        self.name = name
        self.parent = parent
        self._reason: str | None = None
        self.cause: object | None = None
        self._children: list[CancelScope] = []
        self._callbacks: list[Callable[[str], None]] = []
        self._event: asyncio.Event | None = None

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def reason_or(self, default: str) -> str:
        return self._reason if self._reason is not None else default

    def child(self, name: str = "") -> CancelScope:
        """A child scope: cancelled when this one is, cancellable on its own."""
        scope = CancelScope(name, self)
        if self._reason is not None:
            scope.cancel(self._reason)
        else:
            self._children.append(scope)
        return scope

    def cancel(self, reason: str = "cancelled", cause: object | None = None) -> bool:
        """Cancel this scope and its children. Returns True if this call was the first.

        ``cause`` is optional structured detail for whoever owns the scope (the connection
        reads the close code from it); like the reason, the first one wins.
        """
        if self._reason is not None:
            return False
        self._reason = reason
        self.cause = cause
        if self._event is not None:
            self._event.set()
        if self.parent is not None and self in self.parent._children:
            self.parent._children.remove(self)
        children, self._children = self._children, []
        for child in children:
            child.cancel(reason)
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(reason)
            except Exception:
                log.exception("cancel callback of %s failed", self.name)
        return True

    def on_cancel(self, callback: Callable[[str], None]) -> None:
        """Run ``callback(reason)`` when cancelled (immediately if it already is)."""
        if self._reason is not None:
            callback(self._reason)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> str:
        """Wait until cancelled; returns the reason."""
        if self._reason is None:
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()
        assert self._reason is not None
        return self._reason
