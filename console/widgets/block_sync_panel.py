"""The Overview's block-sync panel: how far the verified chain is behind the header tip, how
fast blocks arrive, and where the bytes of the download budget sit right now.

Two :class:`~console.widgets.kv_panel.KVPanel` columns (progress; budget and sequencer), so a
still number costs nothing per frame, and one line of two sparklines (blocks/s and MB/s).
The snapshot carries only the current rates, so the panel keeps their recent history itself,
one point per distinct snapshot (``generated_at``), like the loop-lag p99 history.

Every value is written most important first: when the panel is narrow the tail is what the
ellipsis takes. Every field may be missing (a node from before block sync, or a field added
later): missing numbers show as ``—``.

When the node reports a stall (``block_sync.stall``: the height the committer waits for has
nobody fetching it), one line over the columns says so, and when the node will give that
header chain up: the one state in which nothing else on the panel moves, so the operator
would otherwise see a frozen verified tip and no reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from console.format import clean
from console.widgets.block_sync_cells import stop_text
from console.widgets.cells import doc_float
from console.widgets.header_sync_panel import NO_VALUE, eta_text, number, progress_bar, tip_height
from console.widgets.kv_panel import KVPanel, KVRow

#: Frames of rate history kept for the sparklines (30 s at the default 4 Hz).
RATE_HISTORY = 120
#: Cells of the progress bar: the panel shares its row with the header-sync panel.
BAR_WIDTH = 8
#: Budget use (fraction of the maximum) from which the budget line warns: fills stop there.
BUDGET_WARN = 0.9
MIB = 1024 * 1024
MUTED = "$foreground-muted"
#: Rows per column at most (the Overview asks for fewer on a short terminal).
LINES = 4


def mib(value: object) -> str:
    """``41`` or ``2.5`` (MiB): whole numbers from ten up, the unit is said once per line."""
    n = doc_float(value)
    if n is None:
        return NO_VALUE
    n /= MIB
    return f"{n:.0f}" if n >= 10 else f"{n:.1f}"


def mb_per_s(value: object) -> str:
    """Bytes per second as ``6.8 MB/s`` (decimal, as link speeds are said)."""
    n = doc_float(value)
    return NO_VALUE if n is None else f"{n / 1e6:.1f} MB/s"


def _seconds(value: object) -> str:
    n = doc_float(value)
    return NO_VALUE if n is None else f"{n:.0f} s"


def stall_text(stall: object, width: int = 0) -> str | None:
    """The stall in the longest form that fits ``width`` columns (0: any width):
    ``waiting for block 21: no peer serves it, giving the header up in 9 s``, then how long
    it has waited and why each peer is not fetching it (their last fill stops, counted), or,
    when even the first form does not fit, ``block 21 unserved, given up in 9 s``. ``None``
    when there is no stall (or the field is not a stall document)."""
    if not isinstance(stall, Mapping):
        return None
    height, give_up = number(stall.get("height")), _seconds(stall.get("give_up_in_s"))
    said = f"waiting for block {height}: no peer serves it, giving the header up in {give_up}"
    detail = f" (waited {_seconds(stall.get('waiting_s'))}"
    stops = stall.get("peer_stops")
    if isinstance(stops, Mapping) and stops:
        counted = sorted(
            (
                (int(doc_float(n) or 0), stop_text(clean(reason or "none", 40)))
                for reason, n in stops.items()
            ),
            key=lambda item: (-item[0], item[1]),
        )
        detail += "; peers: " + ", ".join(f"{n} {reason}" for n, reason in counted)
    forms = (said + detail + ")", said, f"block {height} unserved, given up in {give_up}")
    if width <= 0:
        return forms[0]
    return next((form for form in forms if len(form) <= width), forms[-1])


def stall_lines(snap: Mapping[str, Any]) -> int:
    """Lines the stall takes on the panel (0 or 1), for the Overview's line budget."""
    bs = snap.get("block_sync")
    return 1 if isinstance(bs, Mapping) and isinstance(bs.get("stall"), Mapping) else 0


def has_block_sync(snap: Mapping[str, Any]) -> bool:
    """Whether the node reports block sync at all (older nodes do not)."""
    return isinstance(snap.get("block_sync"), Mapping)


def progress_rows(snap: Mapping[str, Any], bar_width: int = BAR_WIDTH) -> list[KVRow]:
    """Verified tip of header tip, progress with ETA, speed, the download floor and epoch.

    The verified tip is the block-sync section's own (it moves with durable commits), else the
    chain's; the goal is the header tip: no block can be fetched before its header."""
    bs = snap.get("block_sync") or {}
    chain = snap.get("chain") or {}
    verified = bs.get("verified_tip")
    if verified is None:
        verified = tip_height(chain.get("verified_tip"))
    header = tip_height(chain.get("header_tip"))
    rows: list[KVRow] = [("verified", f"{number(verified)} of {number(header)}", "bold")]
    done, total = doc_float(verified), doc_float(header)
    rate = doc_float(bs.get("blocks_per_s"))
    if done is None or total is None or total <= 0:
        rows.append(("progress", NO_VALUE, MUTED))
    else:
        bar = progress_bar(int(done), int(total), bar_width)
        eta = eta_text(int(total - done), rate or 0.0)
        rows.append(("progress", f"{bar} · {eta}", "$success" if done >= total else "$primary"))
    blocks = NO_VALUE if rate is None else f"{rate:,.1f} blk/s"
    speed_style = MUTED if rate is None else ""
    rows.append(("speed", f"{blocks} · {mb_per_s(bs.get('bytes_per_s'))}", speed_style))
    epoch = bs.get("reset_epoch")
    rows.append(
        (
            "floor",
            f"{number(bs.get('download_floor'))} · epoch {number(epoch)}"
            f" · {number(bs.get('committed_total'))} committed",
            "$warning" if isinstance(epoch, int) and epoch > 0 else "",
        )
    )
    return rows


def budget_rows(bs: Mapping[str, Any]) -> list[KVRow]:
    """The byte budget (a full one stops every fill), where its bytes are, the sequencer's
    depths (reorder buffer, blocks being applied) and the work queue's counts."""
    used, cap = doc_float(bs.get("budget_reserved")), doc_float(bs.get("budget_max"))
    full = used is not None and cap is not None and cap > 0 and used >= cap * BUDGET_WARN
    return [
        (
            "budget",
            f"{mib(used)}/{mib(cap)} MiB · peak {mib(bs.get('budget_peak'))}",
            "$warning bold" if full else "",
        ),
        (
            "held",
            f"{mib(bs.get('held_bytes'))} MiB · reserved {mib(bs.get('reserved_bytes'))}",
            "",
        ),
        (
            "reorder",
            f"{number(bs.get('reorder_count'))} · applying {number(bs.get('applying_count'))}"
            f" · {mib(bs.get('reorder_bytes'))} MiB",
            "",
        ),
        (
            "work",
            f"{number(bs.get('pending'))} pending · {number(bs.get('in_flight'))} in flight"
            f" · {number(bs.get('received'))} received",
            "",
        ),
    ]


class BlockSyncPanel(Vertical):
    """Progress and budget columns over a line of rate sparklines. Call :meth:`set_snapshot`
    with every frame; it keeps the rate history."""

    DEFAULT_CSS = """
    BlockSyncPanel {
        height: auto;
    }
    BlockSyncPanel #bs-stall {
        height: 1;
        color: $warning;
        text-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    BlockSyncPanel #bs-stall.-none {
        display: none;
    }
    BlockSyncPanel #bs-budget.-hidden {
        display: none;
    }
    BlockSyncPanel > Horizontal {
        height: auto;
    }
    BlockSyncPanel KVPanel {
        margin-right: 1;
    }
    BlockSyncPanel #bs-progress {
        width: 11fr;
    }
    BlockSyncPanel #bs-budget {
        width: 9fr;
    }
    BlockSyncPanel #bs-rates {
        height: 1;
    }
    BlockSyncPanel #bs-rates.-hidden {
        display: none;
    }
    BlockSyncPanel .bs-spark-label {
        width: auto;
        color: $foreground-muted;
        padding: 0 1 0 0;
    }
    BlockSyncPanel Sparkline {
        width: 1fr;
        height: 1;
        margin-right: 1;
    }
    BlockSyncPanel Sparkline > .sparkline--max-color {
        color: $success;
    }
    BlockSyncPanel Sparkline > .sparkline--min-color {
        color: $primary 50%;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.blocks_history: deque[float] = deque(maxlen=RATE_HISTORY)
        self.bytes_history: deque[float] = deque(maxlen=RATE_HISTORY)
        self._last_generated: object = None
        self._drawn: tuple[list[float], list[float]] = ([], [])
        self._stall: str | None = None
        self._stall_doc: object = None

    def compose(self) -> ComposeResult:
        yield Static("", id="bs-stall", markup=False, classes="-none")
        with Horizontal():
            yield KVPanel(key_width=8, id="bs-progress")
            yield KVPanel(key_width=7, id="bs-budget")
        with Horizontal(id="bs-rates"):
            yield Static("blk/s", classes="bs-spark-label", markup=False)
            yield Sparkline([], id="bs-blocks-spark")
            yield Static("MB/s", classes="bs-spark-label", markup=False)
            yield Sparkline([], id="bs-bytes-spark")

    def set_snapshot(
        self,
        snap: Mapping[str, Any],
        lines: int = LINES,
        *,
        sparklines: bool = True,
        bar_width: int = BAR_WIDTH,
        budget: bool = True,
    ) -> bool:
        """Show ``snap`` (the stall line if there is a stall, the first ``lines`` rows of each
        column, and the sparkline line if ``sparklines``) and add its rates to the history;
        returns whether anything changed. ``bar_width`` 0 leaves the progress bar out (the
        percentage and ETA stay); ``budget`` False hides the budget column (a narrow
        terminal: progress is what must be whole). The stall is said in the longest form
        that fits the panel.

        The history grows whether or not the sparklines are shown, so they have a trend to
        draw as soon as there is room for them again."""
        bs = snap.get("block_sync") or {}
        changed = self.query_one("#bs-progress", KVPanel).set_rows(
            progress_rows(snap, bar_width)[:lines]
        )
        budget_panel = self.query_one("#bs-budget", KVPanel)
        if budget_panel.has_class("-hidden") == budget:
            budget_panel.set_class(not budget, "-hidden")
        changed |= budget_panel.set_rows(budget_rows(bs)[:lines])
        self._stall_doc = bs.get("stall")
        changed |= self._draw_stall()
        generated = snap.get("generated_at")
        if generated != self._last_generated:  # one point per snapshot, not per render
            self._last_generated = generated
            self.blocks_history.append(doc_float(bs.get("blocks_per_s")) or 0.0)
            self.bytes_history.append((doc_float(bs.get("bytes_per_s")) or 0.0) / 1e6)
        rates = self.query_one("#bs-rates")
        if rates.has_class("-hidden") == sparklines:
            rates.set_class(not sparklines, "-hidden")
        return self._draw_sparklines() or changed

    def _draw_stall(self) -> bool:
        stall = stall_text(self._stall_doc, self.content_size.width)
        if stall == self._stall:
            return False
        self._stall = stall
        line = self.query_one("#bs-stall", Static)
        line.set_class(stall is None, "-none")
        line.update(stall or "")
        return True

    def on_resize(self) -> None:
        """The stall's wording depends on the panel's width."""
        self._draw_stall()

    def _draw_sparklines(self) -> bool:
        # Sparkline.data is reactive: only a new list is noticed. One point renders as a
        # full bar (it reads as "at maximum"): wait for a second point to draw a trend.
        blocks, volume = list(self.blocks_history), list(self.bytes_history)
        if len(blocks) < 2 or (blocks, volume) == self._drawn:
            return False
        self._drawn = (blocks, volume)
        self.query_one("#bs-blocks-spark", Sparkline).data = blocks
        self.query_one("#bs-bytes-spark", Sparkline).data = volume
        return True
