"""The recording format: round trips, deltas, seeks, torn tails, corrupt and foreign files,
appending (node_core/observe/record_format.py, record_reader.py, record_writer.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.replay_fixture import DEFAULT_EVENTS, fixture_frames, write_fixture_recording
from node_core.observe.record_format import (
    BLOCK,
    FILE_HEADER,
    JOURNAL,
    KEYFRAME,
    BlockEncoder,
    RecordingError,
)
from node_core.observe.record_patch import apply, diff
from node_core.observe.record_reader import Recording
from node_core.observe.record_writer import RecordWriter

SECONDS, INTERVAL, PEERS = 60.0, 0.25, 6

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write_fixture_recording(
        tmp_path / "r.zrec", peers=PEERS, seconds=SECONDS, interval=INTERVAL
    )


def frames() -> list[tuple[float, dict[str, Any]]]:
    return list(fixture_frames(PEERS, SECONDS, INTERVAL))


# ---------------------------------------------------------------------- patches
@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_a_patch_turns_old_into_new_and_leaves_old_alone(old: Any, new: Any) -> None:
    before = repr(old)
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert repr(old) == before
    assert (patch is None) == (old == new and type(old) is type(new))


def test_a_delta_is_a_small_part_of_a_snapshot() -> None:
    (_, a), (_, b) = frames()[:2]
    import orjson

    assert len(orjson.dumps(diff(a, b))) < len(orjson.dumps(b)) / 5


# ---------------------------------------------------------------------- round trip and seeks
def test_round_trip_every_snapshot_and_row(recording: Path) -> None:
    rec = Recording(recording)
    expected = frames()
    got = list(rec.snapshots())
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [s for _, s in got] == [s for _, s in expected]
    marked = {(r["table"], r["event"]) for r in rec.rows}
    assert {(table, event) for _, table, event, _ in DEFAULT_EVENTS} <= marked
    assert [r["seq"] for r in rec.rows] == list(range(1, len(rec.rows) + 1))
    # One keyframe block per KEYFRAME_SECS of snapshots: a seek never decodes more.
    assert rec.keyframes == 7  # at 0, 10, ... 60 s
    assert rec.torn == 0 and rec.size == recording.stat().st_size


def test_snapshot_at_is_the_last_one_read_at_or_before(recording: Path) -> None:
    rec = Recording(recording)
    expected = frames()
    rng = random.Random(3)
    for _ in range(60):
        i = rng.randrange(len(expected))
        t, snap = expected[i]
        assert rec.snapshot_at(t + INTERVAL * rng.random() * 0.99) == (t, snap)
    assert rec.snapshot_at(expected[0][0] - 100) == expected[0]
    assert rec.snapshot_at(expected[-1][0] + 100) == expected[-1]


def test_rows_until_counts_rows_written_by_then(recording: Path) -> None:
    rec = Recording(recording)
    for at, table, event, _ in DEFAULT_EVENTS:
        i = next(i for i, r in enumerate(rec.rows) if (r["table"], r["event"]) == (table, event))
        assert rec.rows_until(rec.start + at - 0.01) <= i < rec.rows_until(rec.start + at)


# ---------------------------------------------------------------------- torn tails
def test_a_torn_tail_reads_up_to_the_last_complete_block(recording: Path, tmp_path: Path) -> None:
    data = recording.read_bytes()
    full = Recording(recording)
    last = full.snap_blocks[-1]
    expected = frames()
    for cut in (last.offset + 3, last.offset + BLOCK.size + 5, len(data) - 1):
        torn = tmp_path / f"cut-{cut}.zrec"
        torn.write_bytes(data[:cut])
        rec = Recording(torn)
        assert rec.torn > 0
        got = list(rec.snapshots())
        assert got == expected[: len(got)] and len(got) >= len(expected) - 8


def test_a_recording_still_being_written_grows_on_refresh(recording: Path, tmp_path: Path) -> None:
    data = recording.read_bytes()
    growing = tmp_path / "growing.zrec"
    half = Recording(recording).snap_blocks[20].offset
    growing.write_bytes(data[:half])
    rec = Recording(growing)
    before = len(list(rec.snapshots()))
    with open(growing, "ab") as f:
        f.write(data[half:])
    assert rec.refresh()
    assert len(list(rec.snapshots())) == len(frames()) > before


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty: not a zakura recording"),
        (b"\x89PNG\r\n\x1a\n0000", "is not a zakura recording (it starts with"),
        (b"seq,table,event\n1,conn,accepted\n", "is not a zakura recording"),
        (b"ZKREC\x07\r\n", "format version 7, this zakura reads version 1"),
    ],
)
def test_a_foreign_file_is_one_line_naming_it(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as info:
        Recording(path)
    message = str(info.value)
    assert words in message and str(path) in message and "\n" not in message


def test_a_corrupt_block_in_the_middle_is_named(recording: Path) -> None:
    data = bytearray(recording.read_bytes())
    block = Recording(recording).snap_blocks[5]
    data[block.offset + BLOCK.size + 10] ^= 0xFF
    recording.write_bytes(bytes(data))
    with pytest.raises(
        RecordingError, match=rf"block at byte {block.offset} is corrupt \(checksum"
    ):
        Recording(recording)


def test_garbage_after_a_block_is_corrupt_not_torn(recording: Path) -> None:
    blocks = Recording(recording).snap_blocks
    data = bytearray(recording.read_bytes())
    data[blocks[3].offset : blocks[3].offset + 2] = b"XX"
    recording.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="no block header there"):
        Recording(recording)


# ---------------------------------------------------------------------- writing and appending
def test_the_encoder_starts_with_a_keyframe_and_keeps_rows_apart() -> None:
    enc = BlockEncoder(keyframe_secs=10)
    (t0, a), (t1, b) = frames()[:2]
    enc.add_snapshot(t0, a)
    enc.add_rows([{"seq": 1, "wall": t0, "table": "conn", "event": "accepted"}])
    data = enc.flush()
    kinds = [data[2], data[BLOCK.size + BLOCK.unpack(data[: BLOCK.size])[3] + 2]]
    assert kinds == [KEYFRAME, JOURNAL]
    enc.add_snapshot(t1, b)
    assert enc.flush()[2] == ord("D")
    assert enc.flush() == b""


def test_the_writer_refuses_a_foreign_file_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(RecordingError, match="is not a zakura recording"):
        RecordWriter(path)
    assert path.read_text() == "my notes\n"


def test_appending_cuts_a_torn_tail_and_starts_with_a_keyframe(
    recording: Path, tmp_path: Path
) -> None:
    data = recording.read_bytes()
    recording.write_bytes(data[: len(data) - 7])  # a crash mid-block
    kept = len(list(Recording(recording).snapshots()))
    later = [(t + 1000, s) for t, s in frames()[:12]]
    writer = RecordWriter(recording)
    for t, snap in later:
        writer.add(t, snap, [])
    stats = writer.close()
    assert stats.snapshots == 12 and stats.bytes == os.path.getsize(recording)
    rec = Recording(recording)
    assert rec.torn == 0
    got = list(rec.snapshots())
    assert len(got) == kept + 12 and got[kept:] == later
    first_new = next(h for h in rec.snap_blocks if h.t_first >= later[0][0])
    assert first_new.kind == KEYFRAME


def test_a_new_file_starts_with_the_header(tmp_path: Path) -> None:
    path = tmp_path / "new.zrec"
    RecordWriter(path).close()
    assert path.read_bytes() == FILE_HEADER
