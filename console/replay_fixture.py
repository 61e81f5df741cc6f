"""Deterministic recordings (and a trace directory) for the replay screenshots, its tests and
the seek benchmark.

:func:`write_fixture_recording` writes what a recorder would have written over ``seconds`` of
a node with ``peers`` peers (the fixture documents of :mod:`console.fixture`, moving: ages,
bytes, a climbing header tip, loop lag), plus journal rows, among them the marked events
given in ``events`` (a fault, a panic, misbehavior, a reorg at chosen times). It drives the
same :class:`~node_core.observe.record_format.BlockEncoder` as the live writer, flushing
once per simulated second, so the file has exactly the live layout without waiting an hour.

:func:`write_fixture_trace` writes the trace directory a node's ``--trace-dir`` would hold
over the same minute: a JSONL file per table, rows in the trace writer's layout (``ts`` in
microseconds from the start, ``node``, ``event``, then the fields), with the same marked
events.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from console.fixture import FIXTURE_NOW, fixture_label, fixture_snapshot
from node_core.observe.record_format import FILE_HEADER, KEYFRAME_SECS, BlockEncoder

__all__ = [
    "DEFAULT_EVENTS",
    "MarkedEvent",
    "fixture_frames",
    "write_fixture_recording",
    "write_fixture_trace",
]

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


#: ``(table, event, service, fields)`` of the ordinary rows of the fixture trace.
TRACE_KINDS: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("conn", "accepted", None, {"direction": "inbound"}),
    ("handshake", "control.succeeded", None, {"role": "responder"}),
    ("routine", "started", "header_sync", {"generation": 2}),
    ("header_sync", "header_status_received", None, {"height": 130, "range_count": None}),
    ("header_sync", "header_headers_served", None, {"range_start": 121, "range_count": 10}),
    ("block_sync", "block_body_received", None, {"height": 129, "serialized_bytes": 3660}),
    ("block_sync", "block_apply_finished", None, {"height": 129, "result": "committed"}),
    ("stream", "opened", None, {"stream_kind": 5, "direction": "inbound"}),
)


def write_fixture_trace(
    directory: Path,
    *,
    peers: int = 8,
    seconds: float = 60.0,
    rows_per_second: int = 3,
    events: Sequence[MarkedEvent] = DEFAULT_EVENTS,
    seed: int = 11,
) -> Path:
    """Write the trace directory to ``directory`` (replaced) and return it."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    rng = random.Random(seed)
    node = fixture_label(0)
    labels = [fixture_label(i + 1) for i in range(max(peers, 1))]
    rows: list[tuple[float, str, dict[str, Any]]] = []
    for second in range(int(seconds)):
        for k in range(rows_per_second):
            table, event, service, fields = TRACE_KINDS[rng.randrange(len(TRACE_KINDS))]
            at = second + (k + rng.random()) / rows_per_second
            peer = labels[rng.randrange(len(labels))]
            rows.append((at, table, {"event": event, "peer": peer, "service": service, **fields}))
    for at, table, event, fields in events:
        service = "header_sync" if table in ("routine", "header_sync") else None
        rows.append((at, table, {"event": event, "peer": labels[0], "service": service, **fields}))
    rows.sort(key=lambda r: r[0])
    files: dict[str, list[bytes]] = {}
    for at, table, row in rows:
        line = orjson.dumps({"ts": round(at * 1e6), "node": node, **row})
        files.setdefault(table, []).append(line + b"\n")
    for table, lines in files.items():
        (directory / f"{table}.jsonl").write_bytes(b"".join(lines))
    return directory
