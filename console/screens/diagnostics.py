"""The Diagnostics view (key 6): what the node says is wrong now, and where to look.

The node computes its diagnostics itself (``node_core/observe/diagnostics.py``) and ships
them in the snapshot's ``diagnostics`` section, so this view only lays them out: most severe
first, each with its severity in the theme's ``$error`` (critical) or ``$warning`` colour, its
subject, how long it has held, and the node's sentence saying what to look at. The list is
text, not a table: the sentences are the point, and they wrap on an 80-column terminal.

The empty state is the normal case, so it says what would fill the view: the thresholds the
node evaluates against (its snapshot's ``diagnostic_thresholds``, or the defaults for a node
that does not send them).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console.format import clean, duration
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from node_core.observe.diagnostics import DiagnosticThresholds

#: Theme colour of each severity (a theme's own ``error`` and ``warning``).
SEVERITY_STYLE = {"critical": "$error", "warning": "$warning"}


def empty_text(thresholds: dict[str, float] | None) -> str:
    """The empty state: nothing wrong, and the thresholds that would say otherwise."""
    try:
        t = DiagnosticThresholds.from_dict(thresholds or {})
    except (TypeError, ValueError):
        t = DiagnosticThresholds()
    return f"no diagnostics: everything within thresholds ({t.summary()})"


def count_text(rows: list[dict[str, object]]) -> Content:
    """The summary line: how many, and how many of each severity."""
    if not rows:
        return Content.styled("no diagnostics", "$foreground-muted")
    critical = sum(1 for r in rows if r.get("severity") == "critical")
    parts: list[tuple[str, str] | str] = [
        (str(len(rows)), "bold"),
        f" diagnostic{'' if len(rows) == 1 else 's'}",
    ]
    if critical:
        parts += [("  ·  ", "$foreground-muted"), (f"{critical} critical", "$error bold")]
    if len(rows) - critical:
        parts += [
            ("  ·  ", "$foreground-muted"),
            (f"{len(rows) - critical} warning", "$warning bold"),
        ]
    parts.append(("   sentences say where to look; keys 1-5 open those views", "$foreground-muted"))
    return Content.assemble(*parts)


def entry(row: dict[str, object], now: float) -> Content:
    """One diagnostic: a heading line (severity, id, subject, age), then its sentence."""
    severity = str(row.get("severity", "warning"))
    style = SEVERITY_STYLE.get(severity, "$warning")
    raw = row.get("since")
    since = float(raw) if isinstance(raw, int | float) else now
    return Content.assemble(
        ("● " + severity.upper(), f"{style} bold"),
        "  ",
        (clean(row.get("id", "?"), 40), "bold"),
        "  ",
        clean(row.get("subject", ""), 60),
        ("  for ", "$foreground-muted"),
        duration(now - since),
        "\n  ",
        clean(row.get("message", ""), 400),
    )


class DiagnosticsScreen(ConsoleScreen):
    """A summary line, then one entry per active diagnostic (or the empty state)."""

    VIEW_TITLE = "Diagnostics"
    DEFAULT_CSS = """
    DiagnosticsScreen #diag-summary {
        height: 1;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    DiagnosticsScreen #diag-list {
        padding: 0 1;
        height: auto;
    }
    DiagnosticsScreen #diag-empty {
        padding: 1 2;
        color: $foreground-muted;
        text-style: italic;
        height: auto;
        display: none;
    }
    DiagnosticsScreen.-empty #diag-empty {
        display: block;
    }
    DiagnosticsScreen.-empty #diag-list {
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._key: object = None

    def compose_body(self) -> ComposeResult:
        yield Static(id="diag-summary")
        with VerticalScroll(id="diag-scroll"):
            yield Static(id="diag-empty", markup=False)
            yield Static(id="diag-list")

    def apply(self, state: ConsoleState) -> None:
        snap = state.snapshot
        assert snap is not None
        rows = [dict(r) for r in snap.get("diagnostics") or []]
        now = float(snap.get("generated_at") or 0.0)
        key = (tuple((r.get("id"), r.get("subject"), r.get("since")) for r in rows), int(now))
        if key == self._key:
            return
        self._key = key
        self.set_class(not rows, "-empty")
        self.query_one("#diag-summary", Static).update(count_text(rows))
        if rows:
            blocks = [entry(r, now) for r in rows]
            self.query_one("#diag-list", Static).update(Content("\n\n").join(blocks))
        else:
            thresholds = snap.get("diagnostic_thresholds")
            self.query_one("#diag-empty", Static).update(empty_text(thresholds))
