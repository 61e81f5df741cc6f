"""``zakura replay FILE|DIR``: the console over a recording or a trace, with a timeline and
replay keys.

:class:`ReplayConsole` is the ordinary app over a :class:`~console.replay.ReplayClient`, so
every view, table, filter and detail works on the recorded state as it does live; what
replay adds:

- **the timeline bar** (:class:`~console.widgets.timeline.TimelineBar`), mounted under the
  status bar of each view the first time it is shown (the views compose themselves, and
  this keeps them unaware of replay);
- **keys**: space plays and pauses, ``<`` and ``>`` step the speed (x0.25 to x64), left and
  right seek 5 s, shift+left and shift+right 1 min, ``g`` asks for a time, ``n`` or ``]`` and
  ``N`` or ``[`` jump to the next and previous marked event. The seek keys are priority
  bindings (a table's horizontal cursor would otherwise take them on the Peers view), except
  while a text field has the focus, which keeps its cursor keys;
- **seeking** starts the views' state afresh from the position: the snapshot read last at or
  before it and the last journal rows up to it, exactly what a console opened at that moment
  would hold (a seek backwards must not keep rows from the future);
- **refusals**: every action key answers that a recording cannot be acted on;
- **charts**: the Charts view (7) plots the whole recording, read in the background
  (:class:`~console.replay_series.ReplaySeries`), with a cursor at the replay position;
- **a trace directory** (:attr:`~console.replay.ReplayClient.journal_only`): its rows are the
  journal, with the same timeline, keys and marks; every view but the Journal draws
  snapshots, which a trace does not hold, so instead of empty panels those views show one
  :class:`~console.widgets.journal_only.JournalOnlyNotice` naming the Journal view, and the
  status bar names the trace instead of waiting for a node.
"""

from __future__ import annotations

import time
from typing import Any

from textual.binding import Binding
from textual.widget import AwaitMount
from textual.widgets import Input

from console.app import ZakuraConsole
from console.charts_source import ChartSource
from console.format import duration
from console.history import History
from console.replay import REFUSAL, SPEEDS, ReplayClient
from console.replay_goto import GotoScreen
from console.replay_series import ReplaySeries
from console.screens.base import ConsoleScreen
from console.screens.journal import JournalScreen
from console.state import JOURNAL_KEEP, ConsoleState
from console.widgets.footer import ConsoleFooter
from console.widgets.journal_only import JournalOnlyNotice
from console.widgets.journal_view import JournalView
from console.widgets.status_bar import StatusBar
from console.widgets.timeline import TimelineBar, offset_text
from node_core.observe.trace_reader import TraceJournal

__all__ = ["ReplayConsole"]

#: Seek steps (seconds): the arrows, and with shift.
STEP, BIG_STEP = 5.0, 60.0
#: How often a replay at the end of a recording still being written looks for more.
FOLLOW_SECS = 1.0
#: The views that read the journal only: over a trace directory they work as over a
#: recording; every other view draws snapshots and shows a :class:`JournalOnlyNotice`.
JOURNAL_VIEWS: tuple[type[ConsoleScreen], ...] = (JournalScreen,)


class ReplayConsole(ZakuraConsole):
    """The console over a recording (see the module docstring)."""

    TITLE = "zakura replay"
    BINDINGS = [
        Binding("space", "toggle_pause", "Play/Pause"),
        Binding("less_than_sign", "slower", "Slower", key_display="<"),
        Binding("greater_than_sign", "faster", "Faster", key_display=">"),
        Binding("left", f"seek({-STEP})", "-5 s", priority=True, show=False),
        Binding("right", f"seek({STEP})", "+5 s", priority=True, show=False),
        Binding("shift+left", f"seek({-BIG_STEP})", "-1 min", priority=True, show=False),
        Binding("shift+right", f"seek({BIG_STEP})", "+1 min", priority=True, show=False),
        Binding("g", "goto", "Go to"),
        Binding("n,right_square_bracket", "next_mark", "Next mark", key_display="n"),
        Binding("N,left_square_bracket", "previous_mark", "Prev mark", key_display="N"),
    ]

    def __init__(
        self,
        client: ReplayClient,
        *,
        refresh_interval: float = 0.25,
        theme: str | None = None,
        ascii: bool = False,
        play: bool = True,
        speed: float = 1.0,
    ) -> None:
        super().__init__(client, refresh_interval=refresh_interval, theme=theme, ascii=ascii)
        self.replay = client
        self.state = self.new_state()
        self.ascii = ascii
        client.clock.speed = speed
        client.clock.set_playing(play)
        #: Screens whose journal view has been told to start afresh since the last seek.
        self._fresh: set[int] = set()
        self._seeked = True
        self._followed = 0.0
        #: The Charts view's series of the whole recording, read in the background (none
        #: for a trace directory: it holds no snapshots to chart).
        self.series = None if client.journal_only else ReplaySeries(client.recording.path)

    def new_state(self) -> ConsoleState:
        """The views' state afresh (at the start and after a seek); over a trace, the
        status bar names it instead of waiting for a node's snapshot."""
        rec = self.replay.recording
        headline = None
        if isinstance(rec, TraceJournal):
            headline = f"trace {rec.path.name} of {rec.node_label or 'an unknown node'}"
        return ConsoleState(read_only=True, headline=headline)

    def on_mount(self) -> None:
        super().on_mount()
        if self.series is not None:
            self.series.start()

    def on_unmount(self) -> None:
        if self.series is not None:
            self.series.close()

    def chart_source(self) -> ChartSource:
        """The whole recording, x from its start, the cursor at the replay position."""
        clock = self.replay.clock
        series = self.series
        span = duration(clock.duration)
        if series is None:
            note = "replay: a trace directory holds no snapshots to chart"
            empty = History(capacity=None)
            return ChartSource(empty, clock.start, 0.0, 1.0, False, clock.position, note)
        if series.error is not None:
            note = f"replay: cannot read the series: {series.error}"
        elif series.busy:
            note = f"replay: reading the recording for the charts ({series.progress:.0%})"
        else:
            every = "every snapshot" if series.dense else "one snapshot per keyframe"
            note = f"replay: the whole recording ({span}, {every}); the cursor is the position"
        return ChartSource(
            series.history,
            clock.start,
            0.0,
            max(clock.duration, 1.0),
            False,
            clock.position,
            note,
        )

    # ------------------------------------------------------------------ frames
    async def poll(self) -> None:
        """One frame at the replay position (no I/O but the recording's own file)."""
        if not self.is_running:
            return
        clock = self.replay.clock
        now = time.monotonic()
        if clock.position >= clock.end and now - self._followed >= FOLLOW_SECS:
            self._followed = now
            if self.replay.refresh() and self.series is not None:  # a recording still
                self.series.follow()  # being written may have grown
        position = clock.position
        state = self.state
        if self._seeked:
            self._seeked = False
            state = self.state = self.new_state()
            state.journal_seq = max(0, self.replay.visible_rows(position) - JOURNAL_KEEP)
            self._fresh.clear()
        snapshot = None
        if not self.replay.journal_only:
            try:
                snapshot = self.replay.snapshot_at(position)
            except LookupError as exc:
                state.link_down = str(exc)
                self.render_current()
                return
        rows = self.replay.rows_between(state.journal_seq, position)
        seq = state.journal_seq
        if snapshot is not None:
            state.set_snapshot(snapshot)
        state.journal_seq = seq  # rows are numbered by the recording, across node restarts
        state.add_journal(rows)
        state.paused = not clock.playing
        self.render_current()

    def render_current(self) -> None:
        super().render_current()
        if not self.is_running:
            return
        screen = self.screen
        if not isinstance(screen, ConsoleScreen) or not screen.is_mounted:
            return
        if id(screen) not in self._fresh:
            self._fresh.add(id(screen))
            for view in screen.query(JournalView):
                view._dirty = True  # re-read the journal: a seek replaced it
                view.apply(self.state.journal)
        if self.replay.journal_only:
            self._journal_only(screen)
        bars = screen.query(TimelineBar)
        if not bars:
            screen.mount(TimelineBar(ascii=self.ascii), after=screen.query_one(StatusBar))
            return  # drawn at the next frame, once it has a size
        clock = self.replay.clock
        bars.first().show(
            position=clock.position,
            start=clock.start,
            end=clock.end,
            playing=clock.playing,
            speed=clock.speed,
            marks=self.replay.marks,
            wall=not self.replay.journal_only,
        )

    def _journal_only(self, screen: ConsoleScreen) -> None:
        """A trace's frame (the status bar names it: :meth:`new_state`): the Journal view
        renders the rows (the base renders only with a snapshot), and a view that draws
        snapshots is replaced by a notice the first time it is shown."""
        if isinstance(screen, JOURNAL_VIEWS):
            screen.apply(self.state)
            return
        if screen.query(JournalOnlyNotice):
            return
        kept = (StatusBar, TimelineBar, ConsoleFooter)
        for child in screen.children:
            if not isinstance(child, kept):
                child.display = False
        screen.mount(JournalOnlyNotice(screen.VIEW_TITLE), before=screen.query_one(ConsoleFooter))

    def switch_mode(self, mode: str) -> AwaitMount:
        """Over a trace, a view that draws snapshots shows its notice as soon as it is
        mounted, not at the next frame (its empty panels would flash first)."""
        mounted = super().switch_mode(mode)
        if self.replay.journal_only:
            self.call_after_refresh(self.render_current)
        return mounted

    def seek_to(self, t: float) -> None:
        """Move the replay to ``t`` and show that moment now."""
        self.replay.clock.seek(t)
        self._seeked = True
        self.poll_soon()

    # ------------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The arrows seek, but not while a text field (a filter, the prompt) has the focus
        or a modal is open: the key then goes where the operator is typing."""
        typing = isinstance(self.focused, Input) or not isinstance(self.screen, ConsoleScreen)
        if action == "seek" and typing:
            return False
        return super().check_action(action, parameters)

    def action_toggle_pause(self) -> None:
        clock = self.replay.clock
        clock.set_playing(not clock.playing)
        self.state.paused = not clock.playing
        self.poll_soon()

    def action_seek(self, seconds: float) -> None:
        self.seek_to(self.replay.clock.position + seconds)

    def action_slower(self) -> None:
        self._step_speed(-1)

    def action_faster(self) -> None:
        self._step_speed(1)

    def _step_speed(self, step: int) -> None:
        clock = self.replay.clock
        i = min(range(len(SPEEDS)), key=lambda k: abs(SPEEDS[k] - clock.speed))
        clock.set_speed(SPEEDS[min(max(i + step, 0), len(SPEEDS) - 1)])
        self.notify(f"speed x{clock.speed:g}", timeout=1.5)
        self.render_current()

    def action_goto(self) -> None:
        clock = self.replay.clock

        def chosen(t: float | None) -> None:
            if t is not None:
                self.seek_to(t)

        self.push_screen(
            GotoScreen(
                position=clock.position,
                start=clock.start,
                end=clock.end,
                wall=not self.replay.journal_only,
            ),
            chosen,
        )

    def action_next_mark(self) -> None:
        position = self.replay.clock.position
        later = [m for m in self.replay.marks if m.t > position]
        self._to_mark(later[0] if later else None, "no marked event after this point")

    def action_previous_mark(self) -> None:
        position = self.replay.clock.position  # on a mark: the one before it
        earlier = [m for m in self.replay.marks if m.t < position]
        self._to_mark(earlier[-1] if earlier else None, "no marked event before this point")

    def _to_mark(self, mark: Any, otherwise: str) -> None:
        if mark is None:
            self.notify(otherwise, timeout=2)
            return
        clock = self.replay.clock
        long = clock.duration >= 3600
        self.notify(f"{mark.text} at {offset_text(mark.t - clock.start, long)}", timeout=3)
        self.seek_to(mark.t)

    def on_timeline_bar_seek(self, message: TimelineBar.Seek) -> None:
        self.seek_to(message.t)

    # ------------------------------------------------------------------ refusals and help
    def request_action(self, kind: str) -> None:
        """Every action is refused: this is a recording."""
        self.notify(REFUSAL.format(what=kind), severity="error", timeout=4)

    def help_rows(self) -> list[tuple[str, str]]:
        rows = [
            ("space", "play / pause the replay"),
            ("< >", f"slower / faster (x{SPEEDS[0]:g} to x{SPEEDS[-1]:g})"),
            ("left / right", f"seek {STEP:g} s back / forward"),
            ("shift+left / right", f"seek {BIG_STEP / 60:g} min back / forward"),
            ("g", "go to a time (from the start, UTC time of day, +/- offset, or %)"),
            ("n or ]", "next marked event (F fault, P panic, M misbehavior, R reorg)"),
            ("N or [", "previous marked event"),
        ]
        live = [
            (k, w.replace("(disabled: --read-only)", "(refused: a recording)"))
            for k, w in super().help_rows()
            if k != "space"
        ]
        return rows + live
