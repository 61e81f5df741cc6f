"""Reorder buffer and sequencer: bodies arrive in any order, are committed strictly in order.

Sans-I/O (reference §4.12). Routines hand received bodies to :meth:`Sequencer.accept`; the
committer takes contiguous runs with :meth:`Sequencer.drain`, writes them, and reports the
durable tip back with :meth:`Sequencer.on_durable` or a refusal with
:meth:`Sequencer.on_rejected`.

Invariants:

- Heights are partitioned: ``<= verified_tip`` durable; ``(verified_tip, next_height)``
  *applying* (drained, handed to the committer, not yet durable); ``>= next_height`` either
  buffered or missing. ``download_floor = next_height - 1`` only moves forward except on a
  rejection or a reset, which both move it down explicitly.
- A body is buffered at most once per height; a second body for a buffered, applying or
  durable height is redundant and refused (the caller releases its bytes).
- At most ``max_applying`` bodies are applying at once (reference: 401 = the largest
  checkpoint gap + 1), so a slow committer back-pressures into the reorder buffer and from
  there into the byte budget, never into unbounded memory.
- The sequencer never touches the byte ledger itself: every method returns the heights whose
  bytes the caller must release or re-queue, so the ledger stays the one owner of bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_APPLYING", "BufferedBody", "Sequencer"]

#: Bodies handed to the committer and not yet durable (reference ``submitted_apply_limit``).
MAX_APPLYING = 401


@dataclass(frozen=True, slots=True)
class BufferedBody:
    """A verified body waiting for its turn: height, header hash, body and who sent it."""

    height: int
    hash: bytes
    header: bytes
    body: bytes
    peer: str

    @property
    def nbytes(self) -> int:
        return len(self.body)


class Sequencer:
    """The reorder buffer plus the in-order drain towards the committer."""

    def __init__(self, verified_tip: int, *, max_applying: int = MAX_APPLYING) -> None:
        if max_applying < 1:
            raise ValueError("max_applying must be >= 1")
        self.verified_tip = verified_tip
        self.next_height = verified_tip + 1
        self.max_applying = max_applying
        self.buffer: dict[int, BufferedBody] = {}
        self.applying: dict[int, BufferedBody] = {}
        self.apply_epoch = 0
        self.committed_total = 0

    # ------------------------------------------------------------------ facts
    @property
    def download_floor(self) -> int:
        return self.next_height - 1

    @property
    def reorder_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffer.values())

    @property
    def applying_bytes(self) -> int:
        return sum(b.nbytes for b in self.applying.values())

    def ready(self) -> bool:
        """Whether :meth:`drain` would hand out something now."""
        return self.next_height in self.buffer and len(self.applying) < self.max_applying

    # ------------------------------------------------------------------ routines
    def accept(self, body: BufferedBody) -> bool:
        """Buffer ``body``; False (redundant: release its bytes) if its height is taken."""
        h = body.height
        if h < self.next_height or h in self.buffer:
            return False
        self.buffer[h] = body
        return True

    def shed_highest(self, above: int) -> BufferedBody | None:
        """Drop and return the highest buffered body above ``above`` (floor funding).

        The floor lane may need bytes that look-ahead bodies hold; the highest one is the
        one the committer needs last, so it is the cheapest to fetch again.
        """
        candidates = [h for h in self.buffer if h > above]
        if not candidates:
            return None
        return self.buffer.pop(max(candidates))

    # ------------------------------------------------------------------ committer
    def drain(self) -> list[BufferedBody]:
        """Move the contiguous run at ``next_height`` into applying; returns it in order."""
        out: list[BufferedBody] = []
        while self.next_height in self.buffer and len(self.applying) < self.max_applying:
            body = self.buffer.pop(self.next_height)
            self.applying[body.height] = body
            out.append(body)
            self.next_height += 1
        return out

    def on_durable(self, tip: int) -> list[int]:
        """The store's verified tip is now ``tip``: those applying bodies are done."""
        done = sorted(h for h in self.applying if h <= tip)
        for h in done:
            del self.applying[h]
        if tip > self.verified_tip:
            self.committed_total += tip - self.verified_tip
            self.verified_tip = tip
        if self.next_height <= tip:
            # Committed by another path (a relayed block): skip past it.
            for h in [h for h in self.buffer if h <= tip]:
                del self.buffer[h]
            self.next_height = tip + 1
        return done

    def on_rejected(self, height: int) -> list[BufferedBody]:
        """The committer refused ``height``: drop it and everything above; returns them."""
        dropped = [b for h, b in self.applying.items() if h >= height]
        dropped += [b for h, b in self.buffer.items() if h >= height]
        for b in dropped:
            self.applying.pop(b.height, None)
            self.buffer.pop(b.height, None)
        self.next_height = max(self.verified_tip + 1, min(self.next_height, height))
        self.apply_epoch += 1
        return sorted(dropped, key=lambda b: b.height)

    def reset_to(self, verified_tip: int) -> list[BufferedBody]:
        """The chain changed under us (a reorg): restart from ``verified_tip``; returns drops."""
        dropped = [b for h, b in self.buffer.items() if h > verified_tip]
        dropped += [b for h, b in self.applying.items() if h > verified_tip]
        self.buffer = {h: b for h, b in self.buffer.items() if h <= verified_tip}
        self.applying = {h: b for h, b in self.applying.items() if h <= verified_tip}
        self.verified_tip = min(self.verified_tip, verified_tip)
        self.next_height = min(self.next_height, verified_tip + 1)
        self.apply_epoch += 1
        return dropped

    def snapshot(self) -> dict[str, Any]:
        return {
            "verified_tip": self.verified_tip,
            "download_floor": self.download_floor,
            "reorder_count": len(self.buffer),
            "reorder_bytes": self.reorder_bytes,
            "applying_count": len(self.applying),
            "applying_bytes": self.applying_bytes,
            "apply_epoch": self.apply_epoch,
        }
