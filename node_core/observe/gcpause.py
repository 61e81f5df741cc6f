"""Pause the cyclic garbage collector around a burst of allocation on the event loop.

Why: building a snapshot allocates thousands of small dicts and lists (several per peer and
routine), which triggers collections; when one of them is a full collection it walks every
object of the node (about 360,000 with 1,000 peers) in the middle of the build. Measured with
1,000 peers (``bench/scale_peers.py``, docs/ARCHITECTURE.md "Measuring performance"): builds
of about 100 ms with outliers of 400-600 ms with the collector on, no such outliers with it
paused. The burst creates no reference cycles, so nothing is left for the collector that it
would have freed; reference counting frees the rest as usual, and the next collection after
the pause runs on the normal thresholds.

:func:`freeze_startup_heap` is the other half: what a process holds once its node has started
(imported modules, classes, the node's own long-lived objects: about 92,000 objects, most of
them the imports of Textual, aiohttp and asyncssh) is moved out of the collector's reach, so a
full collection during a block sync walks only what the sync allocates. Measured on the node
loop during a 50,000-block sync: a full pass 39 ms before, 5 ms after (docs/ARCHITECTURE.md,
"Measuring performance"). Only process entry points call it (``zakura node``, and the node
thread of ``zakura console``): it is process-wide, and a process that builds and drops many
nodes (the tests) would keep their reference cycles forever.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_startup_heap", "gc_paused"]


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


def freeze_startup_heap() -> None:
    """Move every object alive now into the collector's permanent generation (once the node
    has started, from a process entry point only: see the module docstring)."""
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
