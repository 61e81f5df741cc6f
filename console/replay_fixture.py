"""Deterministic recordings for the replay screenshot, its tests and the seek benchmark.

:func:`write_fixture_recording` writes what a recorder would have written over ``seconds`` of
a node with ``peers`` peers (the fixture documents of :mod:`console.fixture`, moving: ages,
bytes, a climbing header tip, loop lag), plus journal rows, among them the marked events
given in ``events`` (a fault, a panic, misbehavior, a reorg at chosen times). It drives the
same :class:`~node_core.observe.record_format.BlockEncoder` as the live writer, flushing
once per simulated second, so the file has exactly the live layout without waiting an hour.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from console.fixture import FIXTURE_NOW, fixture_snapshot
from node_core.observe.record_format import FILE_HEADER, KEYFRAME_SECS, BlockEncoder

__all__ = ["DEFAULT_EVENTS", "MarkedEvent", "fixture_frames", "write_fixture_recording"]

#: ``(seconds from the start, table, event, fields)``: a journal row the timeline marks.
MarkedEvent = tuple[float, str, str, dict[str, Any]]

DEFAULT_EVENTS: tuple[MarkedEvent, ...] = (
    (12.0, "fault", "injected", {"kind": "disconnect", "fault_id": 1}),
    (25.0, "routine", "panicked", {"error": "RuntimeError('injected panic')"}),
    (38.0, "misbehavior", "recorded", {"reason": "status_spam", "action": "recorded"}),
    (47.0, "header_sync", "reorg", {"fork_height": 90, "new_tip": 130}),
)


def fixture_frames(
    peers: int, seconds: float, interval: float, *, start: float = FIXTURE_NOW, seed: int = 5
) -> Any:
    """Yield ``(t, snapshot)`` every ``interval`` for ``seconds``: each a new document (new
    top-level and peer dicts), as a live node's are."""
    rng = random.Random(seed)
    snap = fixture_snapshot(peers, now=start)
    frames = round(seconds / interval) + 1
    busy = max(1, peers // 10)
    for n in range(frames):
        t = start + n * interval
        if n:
            snap = dict(snap)
            snap["generated_at"] = t
            snap["node"] = {
                **snap["node"],
                "uptime_s": round(snap["node"]["uptime_s"] + interval, 3),
            }
            chosen = set(rng.sample(range(peers), busy)) if peers else set()
            rows = []
            for i, peer in enumerate(snap["peers"]):
                row = dict(peer)
                row["age_s"] = round(peer["age_s"] + interval, 3)
                if i in chosen:
                    row["bytes_in"] = peer["bytes_in"] + rng.randrange(100, 200_000)
                    row["bytes_out"] = peer["bytes_out"] + rng.randrange(100, 50_000)
                rows.append(row)
            snap["peers"] = rows
            height = snap["chain"]["header_tip"]["height"] + (1 if n % 8 == 0 else 0)
            snap["chain"] = {
                **snap["chain"],
                "header_tip": {**snap["chain"]["header_tip"], "height": height},
            }
            lag = snap["loop_lag"]
            snap["loop_lag"] = {**lag, "p99_ms": round(1.0 + rng.random() * 4, 2)}
        yield t, snap


def write_fixture_recording(
    path: Path,
    *,
    peers: int = 8,
    seconds: float = 60.0,
    interval: float = 0.25,
    events: Sequence[MarkedEvent] = DEFAULT_EVENTS,
    rows_per_second: int = 2,
    keyframe_secs: float = KEYFRAME_SECS,
    start: float = FIXTURE_NOW,
) -> Path:
    """Write the recording to ``path`` (replaced) and return it."""
    enc = BlockEncoder(keyframe_secs)
    pending = sorted(events)
    seq = 0
    label = fixture_snapshot(max(peers, 1), now=start)["peers"][0]["label"]
    with open(path, "wb") as f:
        f.write(FILE_HEADER)
        second = 0
        for t, snap in fixture_frames(peers, seconds, interval, start=start):
            rows: list[dict[str, Any]] = []
            while pending and start + pending[0][0] <= t:
                at, table, event, fields = pending.pop(0)
                seq += 1
                rows.append(_row(seq, start + at, table, event, label, fields))
            if (t - start) >= second:
                for k in range(rows_per_second):
                    seq += 1
                    rows.append(
                        _row(seq, t + k / 10, "routine", "started", label, {"generation": seq})
                    )
                second += 1
            enc.add_rows(rows)
            enc.add_snapshot(t, snap)
            if (t - start) % 1.0 + interval > 1.0 - 1e-9:  # one flush per simulated second
                f.write(enc.flush())
        f.write(enc.flush())
    return path


def _row(
    seq: int, wall: float, table: str, event: str, peer: str, fields: dict[str, Any]
) -> dict[str, Any]:
    service = {"routine": "header_sync", "header_sync": "header_sync"}.get(table)
    return {
        "seq": seq,
        "mono": wall - FIXTURE_NOW,
        "wall": wall,
        "table": table,
        "event": event,
        "peer": peer,
        "service": service,
        "fields": dict(fields),
    }
