"""``zakura replay DIR`` over a trace directory (issue 13, item 2): a real testnet writes its
traces with ``--trace-dir``, a panic is injected over node 0's write API, and the replay
(Pilot, the real app) serves node 0's tables merged in time order as its journal: the fault's
mark is on the timeline and ``n`` lands on it, the views that draw snapshots say what they
need, and actions are refused. Bad input is a real ``zakura replay`` process: one line on
stderr, exit code 2."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from console.replay import REFUSAL, ReplayClient
from console.replay_app import JOURNAL_VIEWS, ReplayConsole
from console.screens.journal import JournalScreen
from console.state import JOURNAL_KEEP
from console.widgets.footer import ConsoleFooter
from console.widgets.journal_only import JournalOnlyNotice
from console.widgets.status_bar import StatusBar
from console.widgets.timeline import NO_WALL, TimelineBar
from node_core.node import Node, NodeConfig
from node_core.observe.trace import load_trace
from node_core.observe.trace_reader import TraceJournal
from zakura.testnet import Testnet

SIZE = (140, 40)
ZAKURA = [sys.executable, "-m", "zakura"]


@dataclass(frozen=True)
class Traced:
    """A testnet's trace root, and what node 0 was made to do."""

    root: Path
    node0: Path
    label0: str
    victim: str


async def _wait(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _make_trace(root: Path) -> Traced:
    net = Testnet(
        2,
        api_base_port=0,
        allow_faults=True,
        trace_dir=root / "trace",
        data_dir=root / "data",
        target_peers=1,
        blocks=40,
    )
    await net.start()
    try:
        a, b = net.nodes
        headers = {"Authorization": f"Bearer {a.token}"}
        async with aiohttp.ClientSession() as http:

            async def connected() -> bool:
                async with http.get(f"http://{a.api}/api/v1/snapshot", headers=headers) as r:
                    snap = orjson.loads(await r.read())
                peer = next((p for p in snap["peers"] if p["label"] == b.label), None)
                return peer is not None and any(
                    r["service"] == "discovery" and r["state"] == "running"
                    for r in peer["routines"]
                )

            await _wait(connected, "node 1 to connect with a running discovery routine")
            async with http.post(
                f"http://{a.api}/api/v1/peers/{b.label}/panic",
                headers=headers,
                data=orjson.dumps({"service": "discovery"}),
            ) as r:
                answer = orjson.loads(await r.read())
            assert answer["ok"], answer  # answered once the node saw the routine panic
    finally:
        await net.stop()  # SIGTERM: each node closes its trace writer, flushing every row
    return Traced(root / "trace", root / "trace" / "node-00", a.label, b.label)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    return asyncio.run(_make_trace(tmp_path_factory.mktemp("traced")))


def _open(traced: Traced) -> ReplayClient:
    return ReplayClient.open(traced.node0)


def _fault_ts(traced: Traced) -> float:
    rows = load_trace(traced.node0)["fault"]
    injected = [r for r in rows if r["event"] == "injected" and r["kind"] == "panic"]
    assert len(injected) == 1
    return int(injected[0]["ts"]) / 1e6  # type: ignore[call-overload]


def test_the_journal_is_every_row_of_every_table_in_time_order(traced: Traced) -> None:
    client = _open(traced)
    assert client.journal_only and client.description.endswith(f"({traced.label0})")
    rows = client.rows_between(0, client.clock.end)
    written = load_trace(traced.node0)
    assert len(rows) == sum(len(t) for t in written.values())
    times = [r["wall"] for r in rows]
    assert times == sorted(times) and times[0] == client.clock.start
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    # Each table's rows, in its file's order, with their fields (nulls left out).
    for table, table_rows in written.items():
        mine = [r for r in rows if r["table"] == table]
        assert [r["event"] for r in mine] == [w["event"] for w in table_rows]
        assert [round(r["wall"] * 1e6) for r in mine] == [w["ts"] for w in table_rows]
    fault = next(r for r in rows if r["table"] == "fault" and r["event"] == "injected")
    assert fault["peer"] == traced.victim and fault["fields"]["kind"] == "panic"
    assert None not in fault["fields"].values()
    # A seek reads only the rows it shows: the same rows by index as by a full read.
    half = client.visible_rows((client.clock.start + client.clock.end) / 2)
    assert client.rows_between(half - 3, client.clock.end, 3) == rows[half - 3 : half]


async def test_the_fault_is_marked_and_n_lands_on_it(traced: Traced) -> None:
    client = _open(traced)
    t_fault = _fault_ts(traced)
    kinds = {(m.kind, m.t) for m in client.marks}
    assert ("fault", t_fault) in kinds
    # The injected panic, once per routine it hit: two when node 0 briefly held two
    # connections to the victim (each dialled the other), so count them, all after the fault.
    panicked = sorted(m.t for m in client.marks if m.kind == "panic")
    assert panicked and all(t_fault <= t < t_fault + 1.0 for t in panicked), (t_fault, panicked)
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await app.poll()
        await pilot.pause()
        await app.poll()
        await pilot.pause()
        bar = app.screen.query_one(TimelineBar)
        line, text = str(bar.render()).split("\n")[:2]
        start, end = client.clock.start, client.clock.end

        def column(t: float) -> int:
            return round((t - start) / (end - start) * (len(line) - 1))

        # The fault and its panic are a fraction of a millisecond apart: one cell, and the
        # panic wins it.
        assert line[column(panicked[0])] == "P"
        assert "F 1 fault" in text and f"P {len(panicked)} panic" in text and NO_WALL in text
        assert client.clock.position == start
        await pilot.press("n")
        await app.poll()
        await pilot.pause()
        assert client.clock.position == t_fault
        last = app.state.journal[-1]
        assert (last["table"], last["event"], last["wall"]) == ("fault", "injected", t_fault)
        assert len(app.state.journal) == client.visible_rows(t_fault)
        await pilot.press("n")
        assert client.clock.position == panicked[0]
        await pilot.press("N")
        assert client.clock.position == t_fault
        # Go to a time works from the start; a UTC time of day has nothing to find.
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"14:03:27Z", "enter")
        await pilot.pause()
        error = str(app.screen.query_one("#goto-error").render())
        assert "no wall-clock time" in error
        await pilot.press("escape")
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"50%", "enter")
        await pilot.pause()
        assert client.clock.position == pytest.approx((start + end) / 2)


async def test_the_views_that_draw_snapshots_say_what_they_need(traced: Traced) -> None:
    client = _open(traced)
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE) as pilot:
        app.seek_to(client.clock.end)
        for key in "1245673":
            await pilot.press(key)
            await app.poll()
            await pilot.pause()
            screen = app.screen
            status = str(screen.query_one(StatusBar).render())
            assert status.startswith(f"trace node-00 of {traced.label0}"), status
            if isinstance(screen, JOURNAL_VIEWS):
                assert not screen.query(JournalOnlyNotice)
                continue
            (notice,) = screen.query(JournalOnlyNotice)
            said = str(notice.render())
            assert "journal rows only" in said and "Journal view (3)" in said
            assert screen.VIEW_TITLE in said
            shown = [c for c in screen.children if c.display]
            assert {type(c) for c in shown} == {
                StatusBar,
                TimelineBar,
                JournalOnlyNotice,
                ConsoleFooter,
            }, key
        assert isinstance(app.screen, JournalScreen)
        rows = client.rows_between(0, client.clock.end)
        assert list(app.state.journal) == rows[-JOURNAL_KEEP:]
        assert app.screen.view.table.row_count > 0


async def test_actions_are_refused(traced: Traced) -> None:
    client = _open(traced)
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await app.poll()
        await pilot.pause()
        for screen_key, action_key, kind in (("2", "d", "disconnect"), ("3", "p", "panic")):
            await pilot.press(screen_key, action_key)
            await pilot.pause()
            said = [n.message for n in app._notifications]
            assert REFUSAL.format(what=kind) in said
    from node_core.control import Action

    result = await client.act(Action("disconnect", traced.victim))
    assert not result.ok and "cannot be acted on" in result.message


def test_an_incomplete_last_line_is_left_out(traced: Traced, tmp_path: Path) -> None:
    copy = shutil.copytree(traced.node0, tmp_path / "t")
    rows = len(TraceJournal(copy))
    with (copy / "conn.jsonl").open("ab") as f:
        f.write(b'{"ts":99999999999,"node":"x","event":"clo')  # a node killed mid-write
    journal = TraceJournal(copy)
    assert len(journal) == rows and journal.torn > 0


async def test_a_restarted_node_appends_a_second_run_played_after_the_first(
    tmp_path: Path,
) -> None:
    config = NodeConfig(data_dir=tmp_path / "n", trace_dir=tmp_path / "trace")
    for _ in range(2):
        node = Node(config)
        await node.start()
        await node.stop()
    journal = TraceJournal(tmp_path / "trace")
    assert journal.runs == 2
    rows = journal.rows[:]
    events = [r["event"] for r in rows if r["table"] == "node"]
    assert events[:2] == ["started", "stopping"] and events[2] == "started"
    times = [r["wall"] for r in rows]
    assert times == sorted(times)


# ---------------------------------------------------------------------- the command line
def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZAKURA, "replay", *args], capture_output=True, text=True, timeout=60)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zakura replay: error: "), result.stderr
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(traced: Traced, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is an empty directory" in _one_line(_replay(str(empty)))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a trace\n")
    assert "holds no trace tables" in _one_line(_replay(str(other)))
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "conn.jsonl").write_bytes(b"")
    assert "hold no rows yet" in _one_line(_replay(str(blank)))
    bad = shutil.copytree(traced.node0, tmp_path / "bad")
    lines = (bad / "routine.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = b'{"ts": 12, "event": "started", oops\n'
    (bad / "routine.jsonl").write_bytes(b"".join(lines))
    said = _one_line(_replay(str(bad)))
    assert f"{bad / 'routine.jsonl'}:3: not valid JSON" in said
    neither = tmp_path / "notes.txt"
    neither.write_text("hello\n")
    assert "is not a zakura recording" in _one_line(_replay(str(neither)))
    assert "No such file or directory" in _one_line(_replay(str(tmp_path / "absent")))


def test_a_testnet_trace_root_asks_for_a_node(traced: Traced) -> None:
    said = _one_line(_replay(str(traced.root)))
    assert "holds the traces of 2 nodes (node-00, node-01)" in said
    assert "--node node-00" in said
    said = _one_line(_replay(str(traced.root), "--node", "07"))
    assert "no trace of node-07 (its nodes: node-00, node-01)" in said
    # With a node picked, the trace opens: what stops it here is only the missing terminal.
    result = _replay(str(traced.root), "--node", "01")
    assert "terminal" in _one_line(result)


def test_help_names_both_inputs() -> None:
    result = subprocess.run(
        [*ZAKURA, "replay", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "--record" in result.stdout and "--trace-dir" in result.stdout
    assert "--node NAME" in result.stdout


def test_bench_trace_replay_checks_what_it_measures(tmp_path: Path) -> None:
    """bench trace_replay: every seek returns the trace's rows before that time, in ts order
    (correctness only, never a timing threshold)."""
    from bench.trace_replay import measure
    from console.replay_fixture import write_fixture_trace

    directory = write_fixture_trace(tmp_path / "t", seconds=120, rows_per_second=60)
    result = measure(directory, 8)
    assert result["rows"] == 120 * 60 + 4 and len(result["seek_ms"]) == 8
