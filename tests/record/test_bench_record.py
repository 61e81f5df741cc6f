"""bench record_replay checks what it measures: every seek returns the generator's frame
(correctness only, never a timing threshold)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import CorrectnessError
from bench.record_replay import SEEK_PEERS, bytes_per_minute, measure_seeks
from console.replay_fixture import write_fixture_recording


def test_seeks_return_the_generated_frames(tmp_path: Path) -> None:
    path = write_fixture_recording(tmp_path / "r.zrec", peers=SEEK_PEERS, seconds=30.0)
    result = measure_seeks(path, 30.0, 12)
    assert len(result["seek_ms"]) == len(result["key_ms"]) == 12
    assert result["bytes"] == path.stat().st_size


def test_a_seek_returning_another_frame_is_a_correctness_error(tmp_path: Path) -> None:
    other = write_fixture_recording(tmp_path / "r.zrec", peers=SEEK_PEERS - 1, seconds=10.0)
    with pytest.raises(CorrectnessError, match="returned another frame"):
        measure_seeks(other, 10.0, 3)


def test_a_recording_is_smaller_than_its_json_lines(tmp_path: Path) -> None:
    recorded, plain = bytes_per_minute(tmp_path, 6)
    assert 0 < recorded < plain
