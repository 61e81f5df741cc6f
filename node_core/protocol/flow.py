"""Per-stream credit flow control (sans-I/O).

Invariants:
- A sender never has more unacknowledged bytes on a stream than the receiver's window; the
  receiver therefore buffers at most ``window`` bytes per stream, so a routine that stops
  reading stalls only its own stream and costs bounded memory.
- The receiver returns credit only for bytes the application has consumed, batched so that a
  CREDIT record is sent once a quarter of the window is free again.
- Receiving more than the granted credit is a peer violation (close with RESOURCE).
"""

from __future__ import annotations

from node_core.protocol.limits import MIN_STREAM_WINDOW_BYTES


def stream_window(frame_cap: int) -> int:
    """Window for a stream whose frames are at most ``frame_cap`` bytes (header included)."""
    return max(MIN_STREAM_WINDOW_BYTES, 2 * frame_cap)


class SendCredit:
    """How many bytes we may still send on a stream."""

    __slots__ = ("available",)

    def __init__(self, window: int) -> None:
        self.available = window

    def consume(self, n: int) -> None:
        if n > self.available:
            raise ValueError(f"sending {n} bytes with only {self.available} credit")
        self.available -= n

    def grant(self, n: int) -> None:
        self.available += n


class RecvWindow:
    """How many bytes the peer may still send us, and the credit we owe it."""

    __slots__ = ("_owed", "outstanding", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.outstanding = 0  # bytes received and not yet consumed by the application
        self._owed = 0

    def on_data(self, n: int) -> bool:
        """Account received bytes; False if the peer exceeded its credit."""
        if self.outstanding + self._owed + n > self.window:
            return False
        self.outstanding += n
        return True

    def on_consumed(self, n: int) -> int:
        """The application consumed ``n`` bytes; returns a credit increment to send (or 0)."""
        n = min(n, self.outstanding)
        self.outstanding -= n
        self._owed += n
        if self._owed >= self.window // 4:
            grant, self._owed = self._owed, 0
            return grant
        return 0
