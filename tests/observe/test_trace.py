"""Tests for the JSONL trace writer and reader (reference layout, never-blocking queue)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from node_core.observe.journal import Journal
from node_core.observe.trace import TRANSPORT_KEYS, TraceWriter, load_trace


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_transport_rows_carry_every_reference_key(tmp_path: Path) -> None:
    j = Journal("01")
    w = TraceWriter(tmp_path, "01")
    try:
        w.attach(j)
        j.emit("conn", "accepted", peer="peer:0011223344556677", conn=1, direction="inbound")
        j.emit(
            "handshake",
            "control.started",
            conn=1,
            role="responder",
            phase="control",
            network="mainnet",
        )
        j.emit("ratelimit", "message.oversize", stream_kind="discovery", limit=65536)
        w.flush()
    finally:
        w.close()

    conn = _lines(tmp_path / "conn.jsonl")
    assert len(conn) == 1
    row = conn[0]
    assert list(row)[:3] == ["ts", "node", "event"]
    assert list(row)[3:13] == list(TRANSPORT_KEYS)
    assert row["node"] == "01" and row["event"] == "accepted"
    assert isinstance(row["ts"], int) and row["ts"] >= 0
    assert row["conn"] == 1 and row["direction"] == "inbound"
    assert row["peer"] == "peer:0011223344556677"
    for key in ("stream", "role", "phase", "reason", "selected_protocol", "stream_kind"):
        assert row[key] is None

    hs = _lines(tmp_path / "handshake.jsonl")[0]
    assert hs["event"] == "control.started"
    assert (hs["role"], hs["phase"], hs["network"]) == ("responder", "control", "mainnet")
    assert hs["peer"] is None

    rl = _lines(tmp_path / "ratelimit.jsonl")[0]
    assert rl["stream_kind"] == "discovery"
    assert rl["limit"] == 65536  # extra fields are kept
    assert w.written == 3 and w.dropped == 0


def test_other_tables_carry_peer_service_and_fields(tmp_path: Path) -> None:
    j = Journal("n")
    w = TraceWriter(tmp_path, "n")
    try:
        w.attach(j)
        j.emit(
            "routine",
            "routine.exited",
            peer="peer:aa",
            service="header_sync",
            cause="panic",
            error="ValueError",
        )
        w.flush()
    finally:
        w.close()
    row = _lines(tmp_path / "routine.jsonl")[0]
    assert list(row) == ["ts", "node", "event", "peer", "service", "cause", "error"]
    assert row["peer"] == "peer:aa" and row["service"] == "header_sync"
    assert row["cause"] == "panic" and row["error"] == "ValueError"


def test_fields_never_override_common_keys(tmp_path: Path) -> None:
    j = Journal("n")
    w = TraceWriter(tmp_path, "n")
    try:
        w.attach(j)
        j.emit("node", "real", node="spoof", ts=-1)
        w.flush()
    finally:
        w.close()
    row = _lines(tmp_path / "node.jsonl")[0]
    assert row["node"] == "n" and row["event"] == "real"
    assert isinstance(row["ts"], int) and row["ts"] >= 0


def test_write_row_adds_ts_and_node_and_keeps_given_values(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path, "n")
    try:
        assert w.write_row(
            "header_sync",
            {"event": "header_range_committed", "range_start": 4, "range_count": 2, "reason": None},
        )
        assert w.write_row("header_sync", {"ts": 7, "node": "x", "event": "e"})
        w.flush()
    finally:
        w.close()
    rows = _lines(tmp_path / "header_sync.jsonl")
    assert list(rows[0])[:2] == ["ts", "node"]
    assert rows[0]["node"] == "n" and rows[0]["range_start"] == 4 and rows[0]["reason"] is None
    assert rows[1]["ts"] == 7 and rows[1]["node"] == "x"


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    w = TraceWriter(tmp_path, "n", queue_rows=3, autostart=False)
    drops: list[int] = []
    w.on_drop = drops.append
    try:
        results = [w.write_row("t", {"event": "e", "i": i}) for i in range(5)]
        assert results == [True, True, True, False, False]
        assert w.dropped == 2
        assert drops == [1, 2]
        w.flush()  # starts the writer and drains what was kept
        assert w.written == 3
    finally:
        w.close()
    assert [r["i"] for r in _lines(tmp_path / "t.jsonl")] == [0, 1, 2]


def test_journal_events_are_dropped_too_when_full(tmp_path: Path) -> None:
    j = Journal("n")
    w = TraceWriter(tmp_path, "n", queue_rows=2, autostart=False)
    try:
        w.attach(j)
        for _ in range(5):
            j.emit("node", "tick")  # the emitter never sees the drop
        assert w.dropped == 3
    finally:
        w.close()
    assert len(_lines(tmp_path / "node.jsonl")) == 2


def test_close_is_idempotent_detaches_and_refuses_rows(tmp_path: Path) -> None:
    j = Journal("n")
    w = TraceWriter(tmp_path, "n")
    w.attach(j)
    j.emit("node", "before")
    w.close()
    w.close()
    j.emit("node", "after")
    assert w.write_row("node", {"event": "late"}) is False
    assert w.dropped == 0
    w.flush()  # no-op after close
    assert [r["event"] for r in _lines(tmp_path / "node.jsonl")] == ["before"]


def test_files_are_appended_across_writers(tmp_path: Path) -> None:
    for label in ("first", "second"):
        w = TraceWriter(tmp_path, label)
        w.write_row("conn", {"event": label})
        w.close()
    assert [r["event"] for r in _lines(tmp_path / "conn.jsonl")] == ["first", "second"]


def test_directory_is_created_and_bad_table_names_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    w = TraceWriter(target, "n")
    try:
        assert target.is_dir()
        w.write_row("../escape", {"event": "x"})
        w.write_row("ok", {"event": "y", "bad": object()})  # not JSON-encodable
        w.write_row("ok", {"event": "z"})
        w.flush()
        assert w.errors == 2
        assert w.written == 1
    finally:
        w.close()
    assert not (tmp_path / "a" / "escape.jsonl").exists()
    assert [r["event"] for r in _lines(target / "ok.jsonl")] == ["z"]


def test_load_trace_reads_nodes_and_overrides_node_label(tmp_path: Path) -> None:
    for label in ("01", "02"):
        j = Journal(label)
        w = TraceWriter(tmp_path / f"node-{label}", "ignored-" + label)
        w.attach(j)
        j.emit("conn", "accepted", conn=1)
        j.emit("conn", "closed.neutral", conn=1, reason="idle_timeout")
        w.close()
    (tmp_path / "header_sync.jsonl").write_bytes(
        b'{"ts":1,"node":"top","event":"header_status_sent"}\n\n   \n'
    )
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "conn.jsonl").write_bytes(b'{"ts":2,"node":"own","event":"accepted"}\n')

    tables = load_trace(tmp_path)
    assert set(tables) == {"conn", "header_sync"}
    assert tables["header_sync"] == [{"ts": 1, "node": "top", "event": "header_status_sent"}]
    conn = tables["conn"]
    # Files are read in path order: misc/ < node-01/ < node-02/.
    assert [(r["node"], r["event"]) for r in conn] == [
        ("own", "accepted"),
        ("01", "accepted"),
        ("01", "closed.neutral"),
        ("02", "accepted"),
        ("02", "closed.neutral"),
    ]


def test_load_trace_rejects_non_json_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "conn.jsonl").write_bytes(b'{"event":"ok"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"conn\.jsonl:3"):
        load_trace(tmp_path)
    (tmp_path / "conn.jsonl").write_bytes(b"[1,2]\n")
    with pytest.raises(ValueError, match=r"conn\.jsonl:1"):
        load_trace(tmp_path)


def test_load_trace_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "absent")
