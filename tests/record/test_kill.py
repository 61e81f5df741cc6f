"""``zakura node --record`` killed with SIGKILL mid-recording: the file reads up to its last
complete second, and a second run appends to it (a real node process, a real kill)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from node_core.observe.record_format import FILE_HEADER, RecordingError
from node_core.observe.record_reader import Recording

PROG = [sys.executable, "-m", "zakura", "node", "--listen", "127.0.0.1:0"]


def recording_of(path: Path) -> Recording | None:
    """The recording as a reader sees it now (``None`` before its first block)."""
    try:
        return Recording(path) if path.stat().st_size > len(FILE_HEADER) else None
    except (OSError, RecordingError):
        return None


async def record_until(path: Path, data_dir: Path, snapshots: int) -> tuple[int, int]:
    """Run a recording node until a reader sees ``snapshots`` snapshots, then SIGKILL it.

    Returns what the reader saw last before the kill: (snapshots, journal rows).
    """
    proc = await asyncio.create_subprocess_exec(
        *PROG, "--data-dir", str(data_dir), "--record", str(path), "--blocks", "20",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen = (0, 0)
    try:
        deadline = time.monotonic() + 60
        while seen[0] < snapshots:
            assert proc.returncode is None, "the node exited by itself"
            assert time.monotonic() < deadline, f"no {snapshots} snapshots recorded; saw {seen}"
            rec = recording_of(path)
            if rec is not None:
                seen = (sum(1 for _ in rec.snapshots()), len(rec.rows))
                rec.close()
            await asyncio.sleep(0.05)
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    return seen


async def test_kill_9_loses_at_most_the_last_second_and_a_rerun_appends(tmp_path: Path) -> None:
    path = tmp_path / "node.zrec"
    seen, rows = await record_until(path, tmp_path / "node", snapshots=6)
    rec = Recording(path)  # a torn last block, if the kill cut one, is not an error
    snapshots = list(rec.snapshots())
    # Everything a reader saw while it ran is still there, in order, with the journal.
    assert len(snapshots) >= seen and len(rec.rows) >= rows > 0
    times = [t for t, _ in snapshots]
    assert times == sorted(times)
    assert all(s["node"]["label"] == snapshots[0][1]["node"]["label"] for _, s in snapshots)
    first_boot = snapshots[0][1]["boot_id"]
    size_after_kill = path.stat().st_size

    # The same file again: the torn tail (if any) is cut off and the new run appended.
    await record_until(path, tmp_path / "node", snapshots=len(snapshots) + 6)
    again = Recording(path)
    later = list(again.snapshots())
    assert later[: len(snapshots)] == snapshots
    assert {s["boot_id"] for _, s in later[len(snapshots) :]} - {first_boot}
    assert again.size > size_after_kill - rec.torn
