"""``make screenshots``: drive the real app through a scripted, deterministic demo and write an
SVG and a PNG of every view to ``screenshots/``.

The data comes from :class:`console.fixture.FixtureClient` (frozen clock, fixed peers), so the
images only change when the UI does. PNGs are rendered with CairoSVG; the SVG asks for Fira
Code, which is swapped for DejaVu Sans Mono (installed on Debian) so box drawing lines up.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from console.app import ZakuraConsole
from console.fixture import FixtureClient, fixture_history

SIZE = (140, 40)
#: The common remote-session terminal: every view is shot at this size too.
SMALL = (80, 24)
#: Width in pixels of a PNG of a :data:`SIZE` terminal.
PNG_WIDTH = 1600


@dataclass(frozen=True, slots=True)
class Shot:
    name: str
    keys: tuple[str, ...]
    caption: str
    theme: str | None = None
    read_only: bool = False
    size: tuple[int, int] = SIZE
    ascii: bool = False
    #: Replay a fixture recording (``zakura replay``), paused this many seconds in.
    replay_at: float | None = None
    #: With ``replay_at``: replay a fixture trace directory instead of a recording.
    trace: bool = False


SHOTS = (
    Shot("overview", ("1",), "Overview: node, peers against target, routines matrix, lag, journal"),
    Shot("peers", ("2", "down", "down"), "Peers: one row per peer, routine glyphs, bytes, rates"),
    Shot(
        "peer-detail",
        ("2", "down", "down", "enter"),
        "Peer detail: routines, header sync, streams, events",
    ),
    Shot("journal", ("3",), "Journal: live events with kind, peer and service filters"),
    Shot("misbehavior", ("4",), "Misbehavior: records and counts by reason"),
    Shot("parked", ("5",), "Parked: peers whose header sync is parked, why, work returned"),
    Shot(
        "diagnostics",
        ("6",),
        "Diagnostics: what the node says is wrong, since when, and where to look",
    ),
    Shot(
        "charts",
        ("7",),
        "Charts: tips, blocks/s, MB/s, peers, loop lag and byte budget over the last half hour",
    ),
    Shot("confirm-disconnect", ("2", "down", "d"), "Disconnect asks first and names the target"),
    Shot(
        "confirm-stall",
        ("2", "down", "down", "down", "s"),
        "Stall asks which routine (header_sync or block_sync) and for how long (1 to 600 s)",
    ),
    Shot(
        "confirm-stall-block-sync",
        ("2", "down", "down", "down", "s", "shift+tab", "down", "enter", "tab"),
        "Stall with block_sync chosen: title and effect follow the routine",
    ),
    Shot(
        "confirm-throttle",
        ("2", "down", "down", "down", "w"),
        "Throttle asks for a rate in KiB/s (default 64, 0 lifts it) and names the target",
    ),
    Shot("help", ("2", "question_mark"), "Every key, one screen"),
    Shot("peers-light", ("2",), "The light theme", theme="zakura-light"),
    Shot("peers-high-contrast", ("2",), "The high-contrast theme", theme="zakura-high-contrast"),
    Shot("read-only", ("2", "d"), "--read-only: actions refused, READ-ONLY marked", read_only=True),
    Shot("peers-ansi", ("2",), "--theme ansi: the terminal's own 16 colours", theme="ansi"),
    Shot("peers-ascii", ("2", "down"), "--ascii: states as letters", size=SMALL, ascii=True),
    Shot(
        "replay",
        ("1",),
        "zakura replay: the timeline with fault, panic, misbehavior and reorg marks",
        replay_at=40.0,
    ),
    Shot(
        "replay-charts",
        ("7",),
        "zakura replay, Charts: the whole recording, a cursor at the replay position",
        size=(120, 40),
        replay_at=40.0,
    ),
    Shot(
        "replay-trace",
        ("3",),
        "zakura replay DIR: a --trace-dir directory's tables as one journal, on the timeline",
        replay_at=40.0,
        trace=True,
    ),
    Shot("charts-ascii-80x24", ("7",), "--ascii Charts: * marks at 80x24", size=SMALL, ascii=True),
    *(
        Shot(f"{name}-80x24", keys, f"{title} at 80x24", size=SMALL)
        for name, keys, title in (
            ("overview", ("1",), "Overview"),
            ("peers", ("2", "down", "down"), "Peers"),
            ("peer-detail", ("2", "down", "down", "enter"), "Peer detail"),
            ("journal", ("3",), "Journal"),
            ("misbehavior", ("4",), "Misbehavior"),
            ("parked", ("5",), "Parked"),
            ("diagnostics", ("6",), "Diagnostics"),
            ("charts", ("7",), "Charts (c shows the next three)"),
        )
    ),
)


def console_for(shot: Shot, out: Path, peers: int) -> ZakuraConsole:
    if shot.replay_at is None:
        client = FixtureClient(peers=peers, read_only=shot.read_only)
        app = ZakuraConsole(client, theme=shot.theme, ascii=shot.ascii)
        app.history = fixture_history(peers)  # the Charts view's half hour
        return app
    from console.replay import ReplayClient
    from console.replay_app import ReplayConsole
    from console.replay_fixture import write_fixture_recording, write_fixture_trace

    if shot.trace:
        replay = ReplayClient.open(write_fixture_trace(out / "trace-a", peers=peers))
    else:
        replay = ReplayClient.open(write_fixture_recording(out / f"{shot.name}.zrec", peers=peers))
    replay.clock.seek(replay.clock.start + shot.replay_at)
    return ReplayConsole(replay, theme=shot.theme, ascii=shot.ascii, play=False)


async def take(shot: Shot, out: Path, peers: int = 8) -> Path:
    app = console_for(shot, out, peers)
    async with app.run_test(size=shot.size, notifications=True) as pilot:
        await pilot.pause()
        await app.poll()
        await pilot.pause()
        if shot.replay_at is not None:  # a replay's charts: read before the shot
            from console.replay_app import ReplayConsole

            assert isinstance(app, ReplayConsole)
            if app.series is not None:  # a trace directory has none
                await asyncio.to_thread(app.series.wait, 60)
        for key in shot.keys:
            await pilot.press(key)
            await pilot.pause()
        await app.poll()
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        svg = app.export_screenshot(title=f"zakura console - {shot.caption}")
    path = out / f"{shot.name}.svg"
    await asyncio.to_thread(path.write_text, svg, encoding="utf-8")
    (out / f"{shot.name}.zrec").unlink(missing_ok=True)
    if shot.trace:
        shutil.rmtree(out / "trace-a", ignore_errors=True)
    return path


#: The font CairoSVG draws braille with (DejaVu Sans has it; the monospace fonts do not).
BRAILLE_FONT = 'style="font-family: DejaVu Sans"'
#: A ``<text>`` run holding braille (the Charts view's plot lines), with its x and length.
BRAILLE_RUN = re.compile(
    r'<text (?P<head>[^>]*?)x="(?P<x>[\d.]+)"(?P<mid>[^>]*?)textLength="(?P<len>[\d.]+)"'
    r"(?P<tail>[^>]*)>(?P<run>[^<]*[\u2800-\u28ff][^<]*)</text>"
)


def cell_braille(svg: str) -> str:
    """Each braille character of ``svg`` in its own cell.

    No monospace font on the machine has braille, so CairoSVG draws it in a proportional
    fallback and, ignoring ``textLength``, lets a run of it drift right of its cells (a plot
    line past its axis). One ``<text>`` per character, in a font that has braille, puts each
    where the terminal would.
    """

    def split(m: re.Match[str]) -> str:
        chars = html.unescape(m["run"])
        cell = float(m["len"]) / max(1, len(chars))
        x0 = float(m["x"])
        return "".join(
            f'<text {m["head"]}x="{x0 + i * cell:.1f}"{m["mid"]}{m["tail"]} {BRAILLE_FONT}>'
            f"{html.escape(c)}</text>"
            for i, c in enumerate(chars)
            if not c.isspace()
        )

    return BRAILLE_RUN.sub(split, svg)


def to_png(svg_path: Path, width: int = PNG_WIDTH) -> Path:
    import cairosvg

    svg = svg_path.read_text(encoding="utf-8").replace("Fira Code", "DejaVu Sans Mono")
    svg = cell_braille(svg)
    png = svg_path.with_suffix(".png")
    cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(png), output_width=width)
    return png


async def run(out: Path, only: Sequence[str]) -> list[Path]:
    written: list[Path] = []
    for shot in SHOTS:
        if only and shot.name not in only:
            continue
        svg = await take(shot, out)
        # Every shot at the same scale: an 80-column one is a smaller picture, not bigger text.
        written += [svg, to_png(svg, round(PNG_WIDTH * shot.size[0] / SIZE[0]))]
        print(f"  {shot.name}: {shot.caption}", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m console.screenshots",
        description="Write SVG and PNG screenshots of every console view from fixture data.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("screenshots"), help="output folder (default: screenshots)"
    )
    parser.add_argument("only", nargs="*", help="shot names to take (default: all)")
    args = parser.parse_args(argv)
    print(f"writing screenshots to {args.out}/ ...", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    files = asyncio.run(run(args.out, args.only))
    print(f"{len(files)} files written", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
