"""The live journal log with filters by kind (table), peer and service, and follow mode.

The view keeps its own reading position in the journal (the last ``seq`` it examined), so a
frame only looks at events newer than that, and only the ones that pass the filters become
rows. Changing a filter re-reads the journal the console keeps (``ConsoleState.journal``) once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Reversible
from itertools import takewhile

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Static

from console.client import JournalRow
from console.format import clean, plural
from console.widgets.journal_format import fields_text, row_texts, text_or_blank
from console.widgets.journal_table import DEFAULT_CAP, JournalTable
from console.widgets.palette import event_style, table_style

#: Longest field text the detail line shows (the table cell is ellipsised far earlier).
DETAIL_LIMIT = 600


class JournalFilters:
    """The active filters; an empty value lets everything through."""

    def __init__(self) -> None:
        self.table: str | None = None
        self.service: str | None = None
        self.peer = ""

    @property
    def active(self) -> bool:
        return bool(self.table or self.service or self.peer)

    def matches(self, row: JournalRow) -> bool:
        if self.table is not None and row.get("table") != self.table:
            return False
        if self.service is not None and row.get("service") != self.service:
            return False
        if self.peer:
            peer = row.get("peer")
            return peer is not None and self.peer.lower() in str(peer).lower()
        return True


def cycle(current: str | None, present: Iterable[str | None]) -> str | None:
    """The next value after ``current`` in the sorted ``present`` values, then back to all."""
    values = sorted({v for v in present if v})
    if not values:
        return None
    if current not in values:
        return values[0]
    i = values.index(current)
    return values[i + 1] if i + 1 < len(values) else None


class JournalView(Vertical):
    """Filter line, peer-filter input (shown on ``/``), and the journal table."""

    DEFAULT_CSS = """
    JournalView {
        height: 1fr;
    }
    JournalView > #journal-filters {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    JournalView > #journal-detail {
        height: auto;
        max-height: 4;
        padding: 0 1;
        background: $boost;
    }
    JournalView > #peer-filter {
        display: none;
        height: 3;
        border: tall $accent;
    }
    JournalView > #peer-filter.-open {
        display: block;
    }
    """

    BINDINGS = [Binding("escape", "close_peer_filter(False)", "Cancel filter", show=False)]

    def __init__(self, *, cap: int = DEFAULT_CAP, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cap = cap
        self.filters = JournalFilters()
        self._seen_seq = 0
        self._dirty = True
        self._journal: Reversible[JournalRow] = ()
        self._peer_before = ""
        self._header_key: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="journal-filters")
        yield Input(placeholder="peer contains... (Enter keeps, Esc cancels)", id="peer-filter")
        yield JournalTable(cap=self.cap, id="journal-table")
        yield Static(id="journal-detail")

    @property
    def table(self) -> JournalTable:
        return self.query_one(JournalTable)

    # ------------------------------------------------------------------ frames
    def apply(self, journal: Reversible[JournalRow]) -> None:
        """Render a frame: append the unseen events that pass the filters (or re-filter)."""
        self._journal = journal
        table = self.table
        if self._dirty:
            self._dirty = False
            rows = [r for r in journal if self.filters.matches(r)]
            table.replace_rows(rows[-self.cap :])
            self._seen_seq = self._newest_seq(journal)
        else:
            # Walk back from the newest event to the last one already examined: O(new).
            fresh = list(takewhile(lambda r: int(r["seq"]) > self._seen_seq, reversed(journal)))
            if fresh:
                self._seen_seq = int(fresh[0]["seq"])
                rows = [r for r in reversed(fresh) if self.filters.matches(r)]
                if len(rows) >= self.cap:
                    table.replace_rows(rows[-self.cap :])
                else:
                    table.append_rows(rows)
        if not table.row_count:
            # No row, no RowHighlighted: the detail line would keep describing a vanished row.
            self.query_one("#journal-detail", Static).update("")
        self._render_header()

    @staticmethod
    def _newest_seq(journal: Reversible[JournalRow]) -> int:
        for row in reversed(journal):
            return int(row["seq"])
        return 0

    def _refilter(self) -> None:
        self._dirty = True
        self.apply(self._journal)

    def _render_header(self) -> None:
        f, table = self.filters, self.table
        key = (f.table, f.service, f.peer, table.following, table.row_count)
        if key == self._header_key:
            return
        self._header_key = key

        def part(name: str, value: str | None) -> list[str | tuple[str, str]]:
            if value:
                return [(f"{name} ", "$foreground-muted"), (clean(value, 40), "$accent bold"), "  "]
            return [(f"{name} ", "$foreground-muted"), ("all", ""), "  "]

        follow = ("following", "$success bold") if table.following else ("held", "$warning bold")
        count = plural(table.row_count, "row") + (" (filtered: c clears)" if f.active else "")
        self.query_one("#journal-filters", Static).update(
            Content.assemble(
                *part("kind", f.table),
                *part("peer", f.peer),
                *part("service", f.service),
                ("│ ", "$foreground-muted"),
                follow,
                ("  │ ", "$foreground-muted"),
                (count, "$foreground-muted"),
            )
        )

    # ------------------------------------------------------------------ filter actions
    def cycle_table(self) -> None:
        """Next journal table (kind) present in the journal, then all."""
        self._cycle("table", lambda r: r.get("table"))

    def cycle_service(self) -> None:
        """Next service present in the journal, then all."""
        self._cycle("service", lambda r: r.get("service"))

    def _cycle(self, attr: str, get: Callable[[JournalRow], str | None]) -> None:
        present = {get(r) for r in self._journal}
        setattr(self.filters, attr, cycle(getattr(self.filters, attr), present))
        self._refilter()

    def clear_filters(self) -> None:
        """Drop every filter (and close the peer input)."""
        self.filters = JournalFilters()
        self._close_input()
        self._refilter()

    def set_peer_filter(self, text: str) -> None:
        """Keep only events whose peer label contains ``text`` (case-insensitive)."""
        if text != self.filters.peer:
            self.filters.peer = text
            self._refilter()

    def open_peer_filter(self) -> None:
        """Show the peer input, pre-filled with the current filter."""
        box = self.query_one("#peer-filter", Input)
        self._peer_before = self.filters.peer
        box.value = self.filters.peer
        box.add_class("-open")
        box.focus()

    def action_close_peer_filter(self, keep: bool) -> None:
        """Enter keeps the typed filter; Esc restores the one from before ``/``."""
        box = self.query_one("#peer-filter", Input)
        if not box.has_class("-open"):
            return
        if not keep:
            self.set_peer_filter(self._peer_before)
        self._close_input()

    def _close_input(self) -> None:
        box = self.query_one("#peer-filter", Input)
        if box.has_class("-open"):
            box.remove_class("-open")
            self.table.focus()

    def toggle_follow(self) -> None:
        table = self.table
        table.set_following(not table.following)
        self._render_header()

    @on(Input.Changed, "#peer-filter")
    def _peer_typed(self, event: Input.Changed) -> None:
        # Live narrowing: the operator sees the effect of each keystroke.
        if event.input.has_class("-open"):
            self.set_peer_filter(event.value.strip())

    @on(Input.Submitted, "#peer-filter")
    def _peer_submitted(self, event: Input.Submitted) -> None:
        self.set_peer_filter(event.value.strip())
        self.action_close_peer_filter(True)

    @on(JournalTable.RowHighlighted, "#journal-table")
    def _row_highlighted(self, event: JournalTable.RowHighlighted) -> None:
        # The table ellipsises long fields; the highlighted event is shown here in full.
        row = self.table.row_at(event.row_key.value)
        detail = self.query_one("#journal-detail", Static)
        if row is None:
            detail.update("")
            return
        time, seq, table, ev, _peer, service, _fields = row_texts(row)
        peer = text_or_blank(row.get("peer"), 40)
        detail.update(
            Content.assemble(
                (f"#{seq}  {time}  ", "$foreground-muted"),
                (table, table_style(table)),
                ("/", "$foreground-muted"),
                (ev, event_style(table, ev)),
                f"  {peer}  ",
                (service, "$secondary"),
                "\n",
                (fields_text(row.get("fields"), DETAIL_LIMIT) or "(no fields)", ""),
            )
        )

    @on(JournalTable.FollowChanged)
    def _follow_changed(self, _event: JournalTable.FollowChanged) -> None:
        self._render_header()
