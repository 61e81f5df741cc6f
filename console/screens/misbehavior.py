"""The Misbehavior view: what peers did wrong, what the node did about it, and who did most.

Records come from ``snapshot["misbehavior"]`` (the node keeps its newest hundred), the grouped
counts by (service, reason) from ``snapshot["misbehavior_tally"]`` (complete, never trimmed),
and the per-peer counts from the records. ``d`` and ``p`` act on the selected record's peer,
but only while that peer is still connected: there is nothing to disconnect otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static

from console.format import clean, short_peer
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.count_list import CountLine, CountList
from console.widgets.misbehavior_table import MisbehaviorTable


def tally_lines(tally: Sequence[Mapping[str, Any]]) -> list[CountLine]:
    """One line per (service, reason) with its count."""
    width = max((len(clean(t.get("service") or "-", 16)) for t in tally), default=0)
    return [
        (
            int(t.get("count") or 0),
            (
                (clean(t.get("service") or "-", 16).ljust(width), "$secondary"),
                (clean(t.get("reason") or "-", 60), "$misbehaving"),
            ),
        )
        for t in tally
    ]


def peer_lines(records: Sequence[Mapping[str, Any]], connected: set[str]) -> list[CountLine]:
    """One line per peer: records, how many of them disconnected it, and whether it is back."""
    counts: dict[str, list[int]] = {}
    for r in records:
        c = counts.setdefault(str(r.get("label")), [0, 0])
        c[0] += 1
        c[1] += r.get("action") == "disconnected"
    lines: list[CountLine] = []
    for label, (n, dropped) in counts.items():
        state = ("connected", "$peer-ok") if label in connected else ("gone", "$peer-exited")
        lines.append(
            (
                n,
                (
                    (short_peer(label, 32).ljust(16), ""),
                    (
                        f"{dropped} disconnect{'s' if dropped != 1 else ''}".ljust(14),
                        "$foreground-muted",
                    ),
                    state,
                ),
            )
        )
    return lines


class MisbehaviorScreen(ConsoleScreen):
    """Tallies by reason and by peer on top; the records table below."""

    VIEW_TITLE = "Misbehavior"
    ACT_HINT = "   d / p act on the selected record's peer"
    DEFAULT_CSS = """
    MisbehaviorScreen #mis-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MisbehaviorScreen #mis-groups {
        height: 3;
    }
    MisbehaviorScreen .mis-panel {
        width: 1fr;
        height: 100%;
        border: round $foreground 30%;
        border-title-color: $misbehaving;
        padding: 0 1;
        overflow-y: auto;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._summary_key: tuple[object, ...] | None = None

    def compose_body(self) -> ComposeResult:
        # Tallies first (the answer at a glance), then every record (the evidence).
        yield Static(id="mis-summary")
        with Horizontal(id="mis-groups"):
            with Vertical(classes="mis-panel", id="mis-by-reason") as box:
                box.border_title = "by service / reason (all time)"
                yield CountList("nothing recorded", id="mis-tally")
            with Vertical(classes="mis-panel", id="mis-by-peer") as box:
                box.border_title = "by peer (records kept)"
                yield CountList("nothing recorded", id="mis-peers")
        yield MisbehaviorTable(id="mis-records")

    def on_mount(self) -> None:
        self.query_one(MisbehaviorTable).focus()

    def apply(self, state: ConsoleState) -> None:
        snap = state.snapshot
        assert snap is not None
        records: list[Mapping[str, Any]] = list(snap.get("misbehavior") or [])
        tally: list[Mapping[str, Any]] = list(snap.get("misbehavior_tally") or [])
        connected = {str(p["label"]) for p in snap.get("peers") or []}
        self.query_one(MisbehaviorTable).set_records(records)
        by_reason, by_peer = (
            self.query_one("#mis-tally", CountList),
            self.query_one("#mis-peers", CountList),
        )
        by_reason.set_lines(tally_lines(tally), "$misbehaving bold")
        by_peer.set_lines(peer_lines(records, connected))
        # Both group panels as tall as the fuller one (bounded), so their borders line up.
        height = min(max(len(by_reason.lines), len(by_peer.lines), 1), 8) + 2
        groups = self.query_one("#mis-groups")
        if groups.styles.height is None or groups.styles.height.value != height:
            groups.styles.height = height
        self._render_summary(records, tally, connected)

    def _render_summary(
        self,
        records: Sequence[Mapping[str, Any]],
        tally: Sequence[Mapping[str, Any]],
        connected: set[str],
    ) -> None:
        total = sum(int(t.get("count") or 0) for t in tally)
        dropped = sum(1 for r in records if r.get("action") == "disconnected")
        peers = {str(r.get("label")) for r in records}
        back = len(peers & connected)
        key = (total, len(records), dropped, len(peers), back)
        if key == self._summary_key:
            return
        self._summary_key = key
        summary = self.query_one("#mis-summary", Static)
        if not total and not records:
            summary.update(Content.styled("no misbehavior recorded", "$foreground-muted"))
            return
        dot = ("  ·  ", "$foreground-muted")
        summary.update(
            Content.assemble(
                (f"{total}", "$misbehaving bold"),
                " recorded (all time)",
                dot,
                (f"{len(records)}", "bold"),
                " kept",
                dot,
                (f"{dropped}", "bold"),
                " disconnected",
                dot,
                (f"{len(peers)}", "bold"),
                f" peer{'s' if len(peers) != 1 else ''}, {back} still connected",
                # A read-only console acts on nothing: it does not say it would.
                ("" if self.console.policy.read_only else self.ACT_HINT, "$foreground-muted"),
            )
        )

    def selected_peer(self) -> str | None:
        """The selected record's peer, if it is still connected (else nothing to act on)."""
        label = self.query_one(MisbehaviorTable).selected_label
        if label is None or self.console.state.peer(label) is None:
            return None
        return label
