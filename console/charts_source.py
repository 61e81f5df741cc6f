"""What the Charts view plots, live or in a replay: a :class:`ChartSource`.

The view does not know where its numbers come from. The live app hands it its own
:class:`~console.history.History` (the last hour of polls, x running up to "now"); the replay
app hands it the series of the whole recording (:mod:`console.replay_series`, x from the start
of the recording) and the replay position as a cursor. Both are the same structure, so the
charts draw them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.format import duration
from console.history import HISTORY_SECONDS, History

__all__ = ["MIN_SPAN", "ChartSource", "live_source"]

#: The narrowest live time axis (seconds): a console just started still shows a minute.
MIN_SPAN = 60.0


@dataclass(frozen=True, slots=True)
class ChartSource:
    """A history and how to lay it out on the time axis.

    ``x = t - origin``; the axis spans ``xmin`` to ``xmax``; ``relative`` labels it as time
    before now (``-5m``, live) or time into a recording (``1:30``, replay); ``cursor`` is the
    replay position (absolute time) or ``None``; ``note`` is the view's summary of the source.
    """

    history: History
    origin: float
    xmin: float
    xmax: float
    relative: bool
    cursor: float | None
    note: str


def live_source(history: History) -> ChartSource:
    """The live console's history: the newest sample is "now", x runs back from it."""
    n = len(history)
    if not n:
        return ChartSource(history, 0.0, -MIN_SPAN, 0.0, True, None, "live: no sample yet")
    times, _values = history.columns()
    last = float(times[-1])
    span = last - float(times[0])
    note = (
        f"live: the last {duration(span)}, one sample per refresh "
        f"(the console keeps {duration(HISTORY_SECONDS)})"
    )
    return ChartSource(history, last, -max(span, MIN_SPAN), 0.0, True, None, note)
