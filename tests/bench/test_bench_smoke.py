"""The benchmarks move the right bytes. Correctness only: never a timing threshold (§9)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from pathlib import Path

import pytest

import bench
from bench import BenchOptions, CorrectnessError, block_sync, header_sync
from bench.__main__ import main
from bench.bulk_service import BULK_CAPABILITY, BULK_KIND, BulkService, Payload
from bench.mux_throughput import run_interleaved
from node_core.protocol.limits import MIB


async def test_mux_benchmark_moves_the_right_bytes(tmp_path: Path) -> None:
    run = await run_interleaved(size_mib=2, repetitions=1, workdir=tmp_path)

    assert run.problems() == []
    assert run.payload_bytes == 2 * MIB
    assert len(run.raw) == len(run.mux) == 1
    for sample in (*run.raw, *run.mux):
        assert sample.bytes_received == run.payload_bytes
        assert sample.digest == run.expected_digest
        assert sample.elapsed > 0
    assert run.mux[0].reads == run.payload_bytes // run.chunk_bytes  # one frame per chunk
    assert math.isfinite(run.ratio) and run.ratio > 0


async def test_problems_reports_wrong_bytes(tmp_path: Path) -> None:
    run = await run_interleaved(size_mib=1, repetitions=1, workdir=tmp_path)
    bad = type(run)(run.payload_bytes, run.chunk_bytes, b"\x00" * 64, run.raw, run.mux)
    assert len(bad.problems()) == 2  # both samples disagree with the claimed digest


async def test_header_sync_benchmark_syncs_the_right_headers(tmp_path: Path) -> None:
    n = 3_000  # three 1,000-header responses: seconds, not the 100,000 of `make bench`
    run = await header_sync.run_interleaved(n_headers=n, repetitions=1, workdir=tmp_path)

    assert run.problems() == []
    assert run.n_headers == n and len(run.baseline) == len(run.sync) == 1
    for sample in (*run.baseline, *run.sync):
        assert sample.headers == sample.tip_height == n
        assert sample.tip_hash == run.tip_hash
        assert sample.digest == run.digest
        assert sample.elapsed > 0
    assert sum(run.sync[0].extra["served_by_server"]) >= 1
    row = header_sync.to_result(run, 1)
    assert row.benchmark == "header_sync" and row.unit == "headers/s"
    assert row.details["max_headers_per_response"] == header_sync.HEADERS_PER_RESPONSE
    assert row.details["servers"] == 3
    assert math.isfinite(row.ratio) and row.ratio > 0
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert leftovers == []  # the chain copies are removed


async def test_header_sync_problems_reports_wrong_headers(tmp_path: Path) -> None:
    run = await header_sync.run_interleaved(n_headers=50, repetitions=1, workdir=tmp_path)
    bad = dataclasses.replace(run, digest=b"\x00" * 32)
    assert len(bad.problems()) == 2  # both samples disagree with the claimed chain
    with pytest.raises(CorrectnessError):
        header_sync.to_result(bad, 1)


async def test_block_sync_benchmark_moves_the_right_bodies(tmp_path: Path) -> None:
    n = block_sync.QUICK_BLOCKS  # seconds, not the 20,000 of `make bench`
    run = await block_sync.run_interleaved(n_blocks=n, repetitions=1, workdir=tmp_path)

    assert run.problems() == []
    assert run.n_blocks == n and len(run.raw) == len(run.pipeline) == len(run.sync) == 1
    for sample in (*run.raw, *run.pipeline):
        assert sample.blocks == n and sample.payload_bytes == run.body_bytes
        assert sample.elapsed > 0
    (sync,) = run.sync
    assert sync.blocks == n and 0 < sync.payload_bytes <= run.body_bytes
    assert sync.extra["problems"] == []  # consistent store, servers' tip, same body bytes
    assert sync.extra["peers"] == 3
    assert sum(sync.extra["served_by_server"]) >= n
    assert sync.extra["bodies_per_commit"] > 0
    assert 0 < sync.extra["budget_peak"] <= sync.extra["budget_max"] == block_sync.BUDGET_BYTES
    main_row, context_row = block_sync.to_results(run, 1)
    assert main_row.benchmark == context_row.benchmark == "block_sync"
    assert main_row.unit == "MB/s" and main_row.goal == block_sync.GOAL
    assert main_row.baseline_value == context_row.measured_value  # the pipeline limit
    assert main_row.details["bodies_match"] is True
    assert math.isfinite(main_row.ratio) and main_row.ratio > 0
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert leftovers == []  # the chain copies and the client's store are removed


async def test_block_sync_problems_reports_wrong_bodies(tmp_path: Path) -> None:
    run = await block_sync.run_interleaved(n_blocks=50, repetitions=1, workdir=tmp_path)
    short = dataclasses.replace(run.pipeline[0], payload_bytes=run.body_bytes - 1)
    bad_sync = dataclasses.replace(run.sync[0], extra={"problems": ["bodies differ"]})
    bad = dataclasses.replace(run, pipeline=[short], sync=[bad_sync])
    assert len(bad.problems()) == 2
    with pytest.raises(CorrectnessError):
        block_sync.to_results(bad, 1)


def test_payload_is_deterministic_and_digested() -> None:
    a = Payload.generate(300_000, 65536)
    b = Payload.generate(300_000, 65536)
    assert a == b
    assert sum(len(c) for c in a.chunks) == 300_000
    assert len(a.chunks) == 5 and len(a.chunks[-1]) == 300_000 - 4 * 65536


def test_bulk_service_shape() -> None:
    svc = BulkService()
    assert svc.kind == BULK_KIND and svc.capability == BULK_CAPABILITY
    with pytest.raises(ValueError):
        BulkService(Payload.generate(1024, 1024), frame_cap=1024)


def test_cli_quick_run_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [b.name for b in bench.discover()]
    assert "mux_throughput" in names and "header_sync" in names
    status = main(
        ["--only", "mux_throughput", "--mb", "1", "--repeat", "1", "--results-dir", str(tmp_path)]
    )
    assert status == 0
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["failures"] == {}
    (row,) = doc["results"]
    assert row["benchmark"] == "mux_throughput"
    assert row["details"]["digests_match"] is True
    assert row["ratio"] > 0
    assert BenchOptions().quick is False


async def test_api_benchmark_reads_whole_snapshots() -> None:
    """The API bench's snapshot row measures real, complete answers of the 1,000-peer document."""
    from bench.api_control import PEERS, snapshot_latency
    from console.fixture import fixture_snapshot

    result = await snapshot_latency(3)
    assert len(result["http_s"]) == 3 and all(s > 0 for s in result["http_s"])
    import orjson

    assert result["bytes"] == len(orjson.dumps(fixture_snapshot(PEERS)))
