"""Trace directories in ``zakura replay DIR``: opening a million rows, and seeking in them.

Why: issue 13 asks that ``zakura replay`` also plays a ``--trace-dir`` directory, and that
seeking stays fast on a large trace (indexed by time, never rescanned from the start). A long
sync traces millions of rows, so a seek has to cost what it shows, not what the trace holds.

Set-up: :func:`console.replay_fixture.write_fixture_trace` writes a trace directory in the
trace writer's layout (one JSONL file per table, a row's ``ts`` in microseconds), a million
rows over an hour (100,000 with ``--quick``).

- **open**: :class:`~node_core.observe.trace_reader.TraceJournal` reads and checks every
  line once and sorts an index of every row by time; the baseline is
  :func:`~node_core.observe.trace.load_trace` on the same directory, which parses every line
  into a dict and sorts nothing (what any reader of the whole trace pays at least).
- **seek**: at random times, what the replay does on a seek: bisect the index, then read the
  journal view's 5,000 rows (``JOURNAL_KEEP``) up to that time from their files. The figure
  is the p99 (goal: <= 100 ms, as for recordings); the baseline is parsing those 5,000 lines
  from memory, the floor of showing them.

Correctness: the rows a seek returns must be exactly the 5,000 rows before that time in the
order of ``ts`` (from :func:`load_trace`, merged and sorted); otherwise the run is a
:class:`bench.CorrectnessError`, not a figure.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import BenchOptions, CorrectnessError, ScenarioResult, register
from console.replay_fixture import write_fixture_trace
from console.state import JOURNAL_KEEP
from node_core.observe.trace import load_trace
from node_core.observe.trace_reader import TraceJournal

NAME = "trace_replay"
SEEK_GOAL_MS = 100.0
ROWS, QUICK_ROWS = 1_000_000, 100_000
SECONDS = 3600
SEEKS, QUICK_SEEKS = 100, 20


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def measure(directory: Path, seeks: int) -> dict[str, Any]:
    """Open, then seek at random times, each checked against the merged trace."""
    t0 = time.perf_counter()
    journal = TraceJournal(directory)
    open_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    tables = load_trace(directory)
    load_s = time.perf_counter() - t1
    # Every row as (ts, table, event), in ts order (ties in table-file order, as the index).
    ordered = sorted(
        (int(row["ts"]), table, i, str(row["event"]))  # type: ignore[call-overload]
        for table in sorted(tables)
        for i, row in enumerate(tables[table])
    )
    merged = [(ts, table, event) for ts, table, _i, event in ordered]
    del ordered
    lines = [orjson.dumps(row) for row in tables[next(iter(tables))][:JOURNAL_KEEP]]
    del tables
    rng = random.Random(13)
    seek_ms: list[float] = []
    floor_ms: list[float] = []
    for _ in range(seeks):
        t = rng.uniform(journal.start, journal.end)
        t2 = time.perf_counter()
        upto = journal.rows_until(t)
        rows = journal.rows[max(0, upto - JOURNAL_KEEP) : upto]
        seek_ms.append((time.perf_counter() - t2) * 1000)
        want = merged[max(0, upto - JOURNAL_KEEP) : upto]
        got = [(round(r["wall"] * 1e6), r["table"], r["event"]) for r in rows]
        if got != want or (upto < len(merged) and merged[upto][0] <= t * 1e6):
            raise CorrectnessError(f"a seek to {t:.3f} s returned other rows than the trace's")
        t3 = time.perf_counter()
        for line in lines:
            orjson.loads(line)
        floor_ms.append((time.perf_counter() - t3) * 1000)
    rows_total = len(journal)
    journal.close()
    return {
        "open_s": open_s,
        "load_s": load_s,
        "seek_ms": seek_ms,
        "floor_ms": floor_ms,
        "rows": rows_total,
    }


@register(NAME, "open and seek a trace directory of a million rows in zakura replay DIR")
async def bench_trace_replay(options: BenchOptions) -> list[ScenarioResult]:
    rows = QUICK_ROWS if options.quick else ROWS
    seeks = QUICK_SEEKS if options.quick else SEEKS
    with tempfile.TemporaryDirectory(prefix="zakura-bench-trace-") as tmp:
        directory = Path(tmp) / "trace"
        t0 = time.perf_counter()
        await asyncio.to_thread(
            write_fixture_trace,
            directory,
            seconds=SECONDS,
            rows_per_second=max(1, rows // SECONDS),
        )
        write_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in directory.iterdir())
        result = await asyncio.to_thread(measure, directory, seeks)
    label = f"{result['rows']:,}-row trace"
    return [
        ScenarioResult(
            benchmark=NAME,
            scenario=f"open (index by time), {label}",
            baseline="load_trace: parse every line into a dict",
            unit="s",
            baseline_value=result["load_s"],
            measured_value=result["open_s"],
            goal=None,
            details={"bytes": size, "generate_s": write_s},
        ),
        ScenarioResult(
            benchmark=NAME,
            scenario=f"seek p99, {JOURNAL_KEEP:,} rows shown, {label}",
            baseline=f"parse {JOURNAL_KEEP:,} lines from memory",
            unit="ms",
            baseline_value=p99(result["floor_ms"]),
            measured_value=p99(result["seek_ms"]),
            goal=None,
            max_value=SEEK_GOAL_MS,
            samples={"seek_ms": result["seek_ms"], "floor_ms": result["floor_ms"]},
            details={"seek_median_ms": statistics.median(result["seek_ms"]), "seeks": seeks},
        ),
    ]
