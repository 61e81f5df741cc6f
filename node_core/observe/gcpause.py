"""Pause the cyclic garbage collector around a burst of allocation on the event loop.

Why: building a snapshot allocates thousands of small dicts and lists (several per peer and
routine), which triggers collections; when one of them is a full collection it walks every
object of the node (about 360,000 with 1,000 peers) in the middle of the build. Measured with
1,000 peers (``bench/scale_peers.py``, docs/ARCHITECTURE.md "Measuring performance"): builds
of about 100 ms with outliers of 400-600 ms with the collector on, no such outliers with it
paused. The burst creates no reference cycles, so nothing is left for the collector that it
would have freed; reference counting frees the rest as usual, and the next collection after
the pause runs on the normal thresholds.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (unless it was off already)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
