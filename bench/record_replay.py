"""Recordings (``--record``, ``zakura replay``): seek latency in an hour, and bytes per minute.

Why: issue 13 asks that seeking anywhere in a one-hour recording of 200 peers takes < 100 ms
(so ``g``, the arrows and the marks answer at once) and that a bench states what a recording
costs on disk per minute, for 6 peers and for 1,000.

Set-up: :func:`console.replay_fixture.write_fixture_recording` writes what the recorder would
have written (the fixture snapshot documents, moving: every peer's age each frame, 10% of the
peers' bytes, the header tip, loop lag; two journal rows a second), a snapshot every 0.25 s
(the console's refresh), through the live writer's encoder, one flush per second, so the
file has the live layout: a keyframe block every 10 s, delta blocks between.

- **seek**: open the one-hour, 200-peer file (its block index), then seek to random times,
  each with the decoded-block cache emptied first, so every seek decodes a keyframe block and
  the deltas after it, as a jump with ``g`` does. The figure is the p99 of those seeks
  (goal: <= 100 ms); the baseline is decoding the keyframe block alone, the floor of any
  seek. The file's size, the time to open it and the median seek are in the details.
- **bytes per minute**, 6 and 1,000 peers: a minute of recording on disk, next to the same
  snapshots written as plain JSON lines (what a naive recorder would write): the ratio is what
  keyframes, deltas and zlib save.

Correctness: every seek must return exactly the frame the generator made for that time;
otherwise the run is a :class:`bench.CorrectnessError`, not a figure.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import BenchOptions, CorrectnessError, ScenarioResult, register
from console.replay_fixture import fixture_frames, write_fixture_recording
from node_core.observe.record_reader import Recording

NAME = "record_replay"
INTERVAL = 0.25
SEEK_PEERS, SEEK_GOAL_MS = 200, 100.0
HOUR, QUICK_SPAN = 3600.0, 600.0
SEEKS, QUICK_SEEKS = 200, 40
SIZE_PEERS = (6, 1000)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def measure_seeks(path: Path, span: float, seeks: int) -> dict[str, Any]:
    """Random seeks, each from a cold cache, checked against the generator's frames."""
    t0 = time.perf_counter()
    rec = Recording(path)
    open_ms = (time.perf_counter() - t0) * 1000
    rng = random.Random(11)
    targets = sorted(rng.uniform(rec.start, rec.start + span) for _ in range(seeks))
    # The frames the generator made at those times, produced again for the check (in order,
    # without keeping an hour of documents).
    wanted: dict[float, Any] = {}
    pending = list(targets)
    frames = fixture_frames(SEEK_PEERS, span, INTERVAL, start=rec.start)
    previous: tuple[float, Any] | None = None
    for t, snap in frames:
        while pending and pending[0] < t:
            assert previous is not None
            wanted[pending.pop(0)] = previous
        previous = (t, snap)
        if not pending:
            break
    for target in pending:
        wanted[target] = previous
    order = list(targets)
    rng.shuffle(order)
    seek_ms: list[float] = []
    key_ms: list[float] = []
    for target in order:
        rec._cache.clear()
        t1 = time.perf_counter()
        got = rec.snapshot_at(target)
        seek_ms.append((time.perf_counter() - t1) * 1000)
        if got != wanted[target]:
            raise CorrectnessError(f"seek to {target - rec.start:.2f} s returned another frame")
        # The floor: decode only the keyframe block the seek started from (with the garbage
        # collector paused, as the seek does).
        rec._cache.clear()
        i = max(0, bisect.bisect_right(rec._t_firsts, target) - 1)
        gc.disable()
        t2 = time.perf_counter()
        rec._decode_one(rec._key_of[i])
        key_ms.append((time.perf_counter() - t2) * 1000)
        gc.enable()
    size = path.stat().st_size
    rec.close()
    return {"seek_ms": seek_ms, "key_ms": key_ms, "open_ms": open_ms, "bytes": size}


def bytes_per_minute(directory: Path, peers: int) -> tuple[float, float]:
    """(recording, plain JSON lines) bytes for one minute of ``peers`` peers."""
    path = write_fixture_recording(
        directory / f"minute-{peers}.zrec", peers=peers, seconds=60.0, interval=INTERVAL
    )
    plain = sum(len(orjson.dumps([t, s])) + 1 for t, s in fixture_frames(peers, 60.0, INTERVAL))
    return float(path.stat().st_size), float(plain)


@register(NAME, "seek latency in a one-hour 200-peer recording; recording bytes per minute")
async def bench_record_replay(options: BenchOptions) -> list[ScenarioResult]:
    span = QUICK_SPAN if options.quick else HOUR
    seeks = QUICK_SEEKS if options.quick else SEEKS
    with tempfile.TemporaryDirectory(prefix="zakura-bench-record-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        path = await asyncio.to_thread(
            write_fixture_recording,
            directory / "hour.zrec",
            peers=SEEK_PEERS,
            seconds=span,
            interval=INTERVAL,
        )
        write_s = time.perf_counter() - t0
        seek = await asyncio.to_thread(measure_seeks, path, span, seeks)
        sizes = {p: await asyncio.to_thread(bytes_per_minute, directory, p) for p in SIZE_PEERS}
    minutes = f"{span / 60:g} min"
    rows = [
        ScenarioResult(
            benchmark=NAME,
            scenario=f"seek p99, {minutes} recording, {SEEK_PEERS} peers, cold cache",
            baseline="decode the keyframe block alone",
            unit="ms",
            baseline_value=p99(seek["key_ms"]),
            measured_value=p99(seek["seek_ms"]),
            goal=None,
            max_value=SEEK_GOAL_MS,
            samples={"seek_ms": seek["seek_ms"], "keyframe_ms": seek["key_ms"]},
            details={
                "seek_median_ms": statistics.median(seek["seek_ms"]),
                "open_ms": seek["open_ms"],
                "file_bytes": seek["bytes"],
                "generate_s": write_s,
                "seeks": seeks,
                "interval_s": INTERVAL,
            },
        )
    ]
    for peers, (recorded, plain) in sizes.items():
        rows.append(
            ScenarioResult(
                benchmark=NAME,
                scenario=f"bytes per minute, {peers:,} peers, snapshot every {INTERVAL:g} s",
                baseline="the same snapshots as JSON lines",
                unit="kB/min",
                baseline_value=plain / 1000,
                measured_value=recorded / 1000,
                goal=None,
                details={"recorded_bytes": recorded, "jsonl_bytes": plain},
            )
        )
    return rows
