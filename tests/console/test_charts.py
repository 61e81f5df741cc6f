"""The Charts view (key 7): its history, its charts, live and in a replay.

SVG snapshots at the two remote-session sizes (80x24: three charts a page, ``c`` for the
next; 120x40: all six) and with ``--ascii`` (it must draw, with ``*`` marks); Pilot checks
that the charts plot what the history holds and name the latest values, that ``c`` pages
through every chart, and that in a replay the charts cover the whole recording with the
cursor at the replay position. After a deliberate change: ``.venv/bin/pytest
tests/console/test_charts.py --snapshot-update``, then look at the report.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from console.app import ZakuraConsole
from console.fixture import FIXTURE_NOW, FixtureClient, fixture_history, fixture_snapshot
from console.history import FIELDS, History, Sample, capacity_for, sample_of
from console.replay import ReplayClient
from console.replay_app import ReplayConsole
from console.replay_fixture import write_fixture_recording
from console.screens.charts import ChartsScreen, layout_for
from console.widgets.chart import CHARTS, ChartPanel, ChartPlot, ClockFormatter, compact, thin

SMALL = (80, 24)
MEDIUM = (120, 40)


def _app(**kwargs: Any) -> ZakuraConsole:
    app = ZakuraConsole(FixtureClient(peers=8), **kwargs)
    app.history = fixture_history(8)
    return app


async def _settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ZakuraConsole)
    await pilot.pause()
    await app.poll()
    await pilot.pause()


def _on_charts(*keys: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """Press ``keys`` (the last one lands on a Charts page), then wait until every chart on
    that page is drawn at its size: a frame is compared only once it is complete, however
    slow the machine."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await _settle(pilot)
        await pilot.press(*keys)
        for _ in range(200):
            screen = pilot.app.screen
            if isinstance(screen, ChartsScreen) and screen.settled:
                break
            await pilot.pause(0.02)
        else:
            raise AssertionError(f"the charts after {keys} were never all drawn")
        await pilot.pause()

    return run_before


# ---------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["80x24", "120x40"])
def test_charts_snapshot(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_on_charts("7"))


def test_charts_second_page_snapshot(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(_app(), terminal_size=SMALL, run_before=_on_charts("7", "c"))


def test_charts_ascii_snapshot(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(_app(ascii=True), terminal_size=SMALL, run_before=_on_charts("7"))


# ---------------------------------------------------------------------- the view
def _title(panel: ChartPanel) -> str:
    return str(panel.query_one(".chart-title", Static).render())


async def test_key_7_plots_the_history_and_names_the_latest_values() -> None:
    app = _app()
    async with app.run_test(size=MEDIUM) as pilot:
        await _settle(pilot)
        await pilot.press("7")
        await _settle(pilot)
        assert isinstance(app.screen, ChartsScreen)
        panels = {p.spec.key: p for p in app.screen.query(ChartPanel)}
        assert list(panels) == [c.key for c in CHARTS] and all(p.display for p in panels.values())
        # The newest row is the fixture snapshot the poll read: its values are in the titles.
        assert "header 12.4k" in _title(panels["tips"]) and "verified 7.3k" in _title(
            panels["tips"]
        )
        assert "p99 3.1" in _title(panels["lag"]) and "limit 64" in _title(panels["budget"])
        plot = panels["lag"].query_one(ChartPlot)
        times, values = app.history.columns()
        assert len(times) == 901  # 900 fixture rows and the polled snapshot
        # Each line is the history thinned to the plot's width; the p99 spikes survive.
        p99 = values[:, FIELDS.index("lag_p99_ms")]
        drawn = [d for d in plot._datasets if len(d.x)]
        assert len(drawn) == 2 and max(drawn[1].y) == pytest.approx(p99.max())
        assert drawn[1].x[-1] == 0.0 and drawn[1].x[0] < -1700  # seconds before now
        summary = str(app.screen.query_one("#charts-summary", Static).render())
        assert "live: the last 30m00s, one sample per refresh" in summary


async def test_c_pages_through_every_chart_at_80x24() -> None:
    app = _app()
    async with app.run_test(size=SMALL) as pilot:
        await _settle(pilot)
        await pilot.press("7")
        await _settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChartsScreen)
        seen: list[str] = []
        for _page in range(screen.pages):
            shown = [p.spec.key for p in screen.query(ChartPanel) if p.display]
            assert 1 <= len(shown) <= 3
            seen += shown
            await pilot.press("c")
            await _settle(pilot)
        assert seen == [c.key for c in CHARTS]
        assert screen.page == 0  # back to the first page


async def test_every_poll_adds_a_row_and_a_pause_leaves_no_gap() -> None:
    client = FixtureClient(peers=4)
    app = ZakuraConsole(client)
    async with app.run_test(size=MEDIUM) as pilot:
        await _settle(pilot)
        assert len(app.history) == 1
        await pilot.press("space")  # paused: the view stands still, the history goes on
        client._snapshot = fixture_snapshot(4, now=FIXTURE_NOW + 1)
        await app.poll()
        shown = app.state.snapshot
        assert shown is not None and shown["generated_at"] == FIXTURE_NOW
        assert len(app.history) == 2
        await app.poll()  # the same frame again adds nothing
        assert len(app.history) == 2


def test_layout_fits_the_terminal() -> None:
    assert layout_for(80, 20) == (1, 2)
    assert layout_for(80, 21) == (1, 3)
    assert layout_for(120, 36) == (2, 3)
    assert layout_for(200, 100) == (2, 3)
    assert layout_for(60, 3) == (1, 1)


# ---------------------------------------------------------------------- the history
def _sample(t: float, v: float = 1.0) -> Sample:
    return Sample(t, tuple(v for _ in FIELDS))


def test_history_keeps_the_newest_rows_in_time_order() -> None:
    history = History(capacity=4)
    for t in range(1, 8):
        history.add(_sample(float(t), float(t) * 10))
    history.add(_sample(5.0))  # not newer than the last row: dropped
    times, values = history.columns()
    assert times.tolist() == [4.0, 5.0, 6.0, 7.0]
    assert values[:, 0].tolist() == [40.0, 50.0, 60.0, 70.0]


def test_a_growing_history_keeps_every_row() -> None:
    history = History(capacity=None)
    for t in range(1000):
        history.add(_sample(float(t)))
    times, _values = history.columns()
    assert len(history) == 1000 and times[0] == 0.0 and times[-1] == 999.0


def test_another_node_starts_the_history_afresh() -> None:
    history = History(capacity=10)
    snap = fixture_snapshot(3)
    history.add_snapshot(snap)
    other = {**fixture_snapshot(3, now=FIXTURE_NOW + 1), "node": {"id": "ee" * 32}}
    history.add_snapshot(other)
    assert len(history) == 1 and history.last_t() == FIXTURE_NOW + 1


def test_sample_of_reads_the_snapshot_sections() -> None:
    snap = fixture_snapshot(6)
    sample = sample_of(snap)
    assert sample is not None
    row = dict(zip(FIELDS, sample.values, strict=True))
    assert row["header_tip"] == 12_400 and row["verified_tip"] == 7_300
    assert row["peers"] == 6 and row["peers_with_status"] == 5 and row["peers_parked"] == 1
    assert row["budget_reserved_mib"] == 41 and row["budget_max_mib"] == 64
    assert row["mb_per_s"] == pytest.approx(6.8)
    headers_only = {**snap, "block_sync": None, "loop_lag": {"samples": 0}}
    bare = sample_of(headers_only)
    assert bare is not None
    values = dict(zip(FIELDS, bare.values, strict=True))
    assert math.isnan(values["blocks_per_s"]) and math.isnan(values["lag_p99_ms"])


def test_an_hour_at_the_default_refresh() -> None:
    assert capacity_for(0.25) == 14_400


def test_thin_keeps_each_bucket_peak() -> None:
    x = np.arange(10.0)
    y = np.array([1, 9, 1, 1, 1, 1, 1, 1, 1, 7], dtype=float)
    tx, ty = thin(x, y, 5)
    assert tx.tolist() == [1.0, 3.0, 5.0, 7.0, 9.0] and ty.tolist() == [9, 1, 1, 1, 7]
    assert thin(x, y, 20)[0] is x


def test_axis_labels_are_compact() -> None:
    assert [compact(v) for v in (12_400, 3.1, 0.42, 67_108_864, 250_000, 0)] == [
        "12.4k",
        "3.1",
        "0.42",
        "67.1M",
        "250k",
        "0",
    ]
    live, replay = ClockFormatter(relative=True), ClockFormatter(relative=False)
    assert live.get_labels_for_ticks(live.get_ticks(-1800, 0)) == ["-30m", "-20m", "-10m", "now"]
    assert replay.get_labels_for_ticks([0, 90, 3725]) == ["0:00", "1:30", "1:02:05"]


# ---------------------------------------------------------------------- replay
async def test_replay_charts_cover_the_recording_with_a_cursor(tmp_path: Path) -> None:
    path = write_fixture_recording(tmp_path / "f.zrec", peers=6, seconds=60)
    client = ReplayClient.open(path)
    frames = list(client.recording.snapshots())
    client.clock.seek(client.clock.start + 20)
    app = ReplayConsole(client, play=False)
    async with app.run_test(size=MEDIUM) as pilot:
        await _settle(pilot)
        assert app.series.wait(30)
        await pilot.press("7")
        await _settle(pilot)
        times, _values = app.series.history.columns()
        assert times.tolist() == [t for t, _s in frames]  # every snapshot, in order
        source = app.chart_source()
        assert source.cursor == client.clock.position and source.xmin == 0.0
        assert source.xmax == pytest.approx(client.clock.duration)
        plot = app.screen.query_one("#chart-lag").query_one(ChartPlot)
        assert [v.x for v in plot._v_lines] == [pytest.approx(20.0)]
        # The titles name the values at the cursor, not at the end of the recording.
        _t, snap = client.recording.snapshot_at(client.clock.position) or (0.0, {})
        p99 = snap["loop_lag"]["p99_ms"]
        assert f"p99 {compact(p99)}" in _title(app.screen.query_one("#chart-lag", ChartPanel))
        await pilot.press("right")  # seeking while paused moves the cursor at once
        await _settle(pilot)
        assert [v.x for v in plot._v_lines] == [pytest.approx(25.0)]
