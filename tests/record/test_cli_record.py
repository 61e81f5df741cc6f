"""The command line of recordings: ``zakura replay`` on a file that is not a recording, and
``--record`` on a file it must not touch, each one line and exit code 2, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ZAKURA = [sys.executable, "-m", "zakura"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZAKURA, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty: not a zakura recording"),
        (b"GIF89a......", "is not a zakura recording"),
        (b"ZKREC\x01\r\nBK\x00", "no snapshot yet"),  # a torn first block: nothing to show
    ],
)
def test_replay_of_a_file_that_is_no_recording_is_one_line(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "x.zrec"
    path.write_bytes(content)
    result = run("replay", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zakura replay: error: ") and words in lines[0]


def test_record_refuses_a_foreign_file_and_leaves_it_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    result = run(
        "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "n"),
        "--record", str(notes),
    )  # fmt: skip
    assert result.returncode == 2
    assert "argument --record:" in result.stderr and "is not a zakura recording" in result.stderr
    assert "zakura node ready" not in result.stdout
    assert notes.read_text() == "keep me\n"


def test_record_refuses_a_directory(tmp_path: Path) -> None:
    result = run(
        "node", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "n"),
        "--record", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2 and "is a directory, not a file" in result.stderr


@pytest.mark.parametrize("command", ["node", "console", "attach"])
def test_help_teaches_record(command: str) -> None:
    out = run(command, "--help").stdout
    assert "--record FILE" in out and "zakura replay" in " ".join(out.split())
