"""The replay's chart series: the Charts view's numbers over a whole recording.

Live, the console builds its chart history one poll at a time (:mod:`console.history`); a
replay has the whole recording at hand, and the Charts view draws all of it with a cursor at
the replay position. :class:`ReplaySeries` turns the recording's snapshots into the same
:class:`~console.history.History`, in a worker thread on its own
:class:`~node_core.observe.record_reader.Recording` (its own file handle and block cache), so
opening the file, seeking and playing never wait for it: the charts fill in as it goes.

How much it reads: a recording of up to :data:`DENSE_BLOCKS` snapshot blocks (about a quarter
of an hour at one block a second) gives every snapshot; a longer one gives one snapshot per
keyframe (every 10 s: 360 points for an hour, more than a chart is wide), so an hour of 200
peers costs a few seconds of background work instead of decoding every delta.

A recording still being written grows: :meth:`ReplaySeries.follow` reads the blocks added
since, in the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

from console.history import History
from node_core.observe.record_format import KEYFRAME, RecordingError
from node_core.observe.record_reader import Recording

__all__ = ["DENSE_BLOCKS", "ReplaySeries"]

#: Up to this many snapshot blocks, every snapshot is a point; beyond, one per keyframe.
DENSE_BLOCKS = 900


class ReplaySeries:
    """The chart history of the recording at ``path``, filled by a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.history = History(capacity=None)
        #: Why the series could not be read (``None``: fine).
        self.error: str | None = None
        self.dense: bool | None = None
        self._blocks_done = 0
        self._blocks_total = 0
        self._recording: Recording | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def busy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def progress(self) -> float:
        """Share of the snapshot blocks known so far that have been read (0 to 1)."""
        return 1.0 if not self._blocks_total else self._blocks_done / self._blocks_total

    def start(self) -> None:
        """Read what the file holds now, in the background (no-op while already reading)."""
        with self._lock:
            if self.busy or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="replay-series", daemon=True)
            self._thread.start()

    def follow(self) -> None:
        """The recording grew: read what was added (in the background)."""
        self.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker is done (tests and tools); ``True`` when it is."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def close(self) -> None:
        """Stop reading (the worker stops at its next snapshot and closes its file); does
        not wait, so quitting a replay is never held up by it."""
        with self._lock:
            self._stopped = True
            if not self.busy and self._recording is not None:
                self._recording.close()
                self._recording = None

    def _run(self) -> None:
        try:
            if self._recording is None:
                self._recording = Recording(self.path)
            else:
                self._recording.refresh()
            self._read(self._recording)
        except (RecordingError, OSError) as exc:
            self.error = str(exc)
        finally:
            with self._lock:
                if self._stopped and self._recording is not None:
                    self._recording.close()
                    self._recording = None

    def _read(self, rec: Recording) -> None:
        blocks = rec.snap_blocks
        self._blocks_total = len(blocks)
        if self.dense is None:
            self.dense = len(blocks) <= DENSE_BLOCKS
        first = self._blocks_done
        if self.dense:
            for _t, snapshot in rec.snapshots(first):
                if self._stopped:
                    return
                self.history.add_snapshot(snapshot)
        else:
            for i in range(first, len(blocks)):
                if self._stopped:
                    return
                if blocks[i].kind == KEYFRAME:
                    found = rec.snapshot_at(blocks[i].t_first)
                    if found is not None:
                        self.history.add_snapshot(found[1])
                self._blocks_done = i + 1
        self._blocks_done = len(blocks)
