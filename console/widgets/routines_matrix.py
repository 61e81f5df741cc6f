"""The routines matrix: one line per service, one column per routine state, counts in cells.

It answers "what is every routine of every peer doing" in a glance (tokio-console's task-state
summary). Every state column is always present, even at zero, so the columns never shift and a
first panic appears in a column the operator already knows to watch.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.content import Content
from textual.widgets import Static

from console.format import clean

#: The routine states of the supervision model, in the order the matrix shows them.
STATES: tuple[str, ...] = ("running", "parked", "exited", "panicked")

#: Theme variable of each state (defined by every theme in ``themes/``).
STATE_VARS: dict[str, str] = {
    "running": "$peer-ok",
    "parked": "$peer-parked",
    "exited": "$peer-exited",
    "panicked": "$peer-panicked bold",
}

Matrix = tuple[tuple[str, tuple[int, ...]], ...]


class RoutinesMatrix(Static):
    """Service x state counts from ``snapshot["routines_summary"]``."""

    DEFAULT_CSS = """
    RoutinesMatrix {
        width: auto;
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._matrix: Matrix | None = None
        self._states: tuple[str, ...] = STATES

    @property
    def line_count(self) -> int:
        """Lines the matrix takes: header, one per service, and a total when there are two+."""
        n = len(self._matrix or ())
        return 1 + max(n, 1) + (1 if n > 1 else 0)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """What the matrix shows, as ``{service: {state: count}}`` with every state present."""
        return {
            service: dict(zip(self._states, row, strict=True))
            for service, row in (self._matrix or ())
        }

    def set_summary(self, summary: Mapping[str, Mapping[str, int]]) -> bool:
        """Show ``summary``; returns whether the display changed.

        States the node reports beyond the four known ones get extra columns rather than
        being dropped, so a new state is visible before the console learns its colour.
        """
        extra = sorted({s for states in summary.values() for s in states} - set(STATES))
        states = STATES + tuple(extra)
        matrix: Matrix = tuple(
            (service, tuple(int(summary[service].get(s, 0)) for s in states))
            for service in sorted(summary)
        )
        if matrix == self._matrix and states == self._states:
            return False
        self._matrix, self._states = matrix, states
        self.update(self._render_matrix())
        return True

    def _render_matrix(self) -> Content:
        matrix, states = self._matrix or (), self._states
        names = [clean(service, 16) for service, _row in matrix]
        name_w = max([len("service"), *(len(n) for n in names)])
        widths = [max(len(s), 4) for s in (*states, "total")]
        header: list[str | tuple[str, str]] = [("service".ljust(name_w), "$foreground-muted bold")]
        for state, w in zip((*states, "total"), widths, strict=True):
            header += [" ", (state.rjust(w), STATE_VARS.get(state, "") + " bold")]
        lines = [Content.assemble(*header)]
        if not matrix:
            lines.append(
                Content.styled("no routines yet: no peer is connected", "$foreground-muted")
            )
            return Content("\n").join(lines)
        totals = [0] * len(states)
        for name, (_service, row) in zip(names, matrix, strict=True):
            lines.append(self._line(name.ljust(name_w), row, states, widths))
            totals = [a + b for a, b in zip(totals, row, strict=True)]
        if len(matrix) > 1:
            lines.append(self._line("all".ljust(name_w), tuple(totals), states, widths, "bold"))
        return Content("\n").join(lines)

    @staticmethod
    def _line(
        name: str, row: tuple[int, ...], states: tuple[str, ...], widths: list[int], extra: str = ""
    ) -> Content:
        parts: list[str | tuple[str, str]] = [(name, extra)]
        for state, n, w in zip(states, row, widths, strict=False):
            style = STATE_VARS.get(state, "") if n else "$foreground-muted"
            parts += [" ", (str(n).rjust(w), f"{style} {extra}".strip())]
        parts += [" ", (str(sum(row)).rjust(widths[-1]), f"bold {extra}".strip())]
        return Content.assemble(*parts)
