"""The operator console: a Textual app over one :class:`~console.client.NodeClient`.

Data flow: one timer polls the client (``--refresh``, 4 Hz by default) for a snapshot and the
journal delta, stores them in :class:`~console.state.ConsoleState`, and asks the visible view
to render. While paused the state is not replaced, so rows stay still under the cursor.

Actions (``d`` disconnect, ``p`` panic, ``k`` park a peer's header sync, ``u`` unpark it,
``s`` stall its header- or block-sync reads, ``w`` throttle its bandwidth) all go through
:meth:`ZakuraConsole.request_action`: policy check, target pick, confirmation naming the
target, a re-check that the target still exists, the action, and a notification with the
effect the node was seen to have.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import ThemeProvider

from console.charts_source import ChartSource, live_source
from console.client import ActionRequest, BriefSnapshots, ClientUnavailable, NodeClient, Snapshot
from console.format import ASCII_GLYPHS, UNICODE_GLYPHS, clean
from console.history import History, capacity_for
from console.policy import ActionPolicy
from console.screens.base import ConsoleScreen
from console.screens.charts import ChartsScreen
from console.screens.diagnostics import DiagnosticsScreen
from console.screens.journal import JournalScreen
from console.screens.misbehavior import MisbehaviorScreen
from console.screens.modals import (
    ConfirmScreen,
    HelpScreen,
    PickServiceScreen,
    StallScreen,
    ThrottleScreen,
)
from console.screens.overview import OverviewScreen
from console.screens.parked import ParkedScreen
from console.screens.peers import PeersScreen
from console.state import ConsoleState
from node_core.control import STALL_SERVICES
from themes import load_themes, variable_defaults

VIEWS: tuple[tuple[str, str, str], ...] = (
    ("1", "overview", "Overview"),
    ("2", "peers", "Peers"),
    ("3", "journal", "Journal"),
    ("4", "misbehavior", "Misbehavior"),
    ("5", "parked", "Parked"),
    ("6", "diagnostics", "Diagnostics"),
    ("7", "charts", "Charts"),
)

#: Longest notification text (a node's sentence plus a quoted reason fits easily).
NOTIFY_LIMIT = 400

#: The service ``k`` parks and ``u`` unparks, and the one ``s`` offers first (as it did before
#: block sync).
HEADER_SYNC = "header_sync"

#: What each action does to the target, for the confirmation (after the target line).
ACTION_EFFECTS = {
    "disconnect": "Its connection closes; every routine on it stops and tears down.",
    "park": "Its header_sync service stops as if a never-drop command could not be queued "
    "to it: its ranges go back to the queue for other peers. The connection and its other "
    "routines stay up.",
    "unpark": "Its header_sync service starts again as a new session on the same connection "
    "(the old stream is reset, a new one opened): both sides send their Status and it is "
    "asked for headers again. The ranges returned when it was parked stay in the queue.",
    "throttle": "We read from it no faster than that rate, as over a slow link: every service "
    "on the connection slows down, its block-sync window should shrink and the sync carry on "
    "through other peers. 0 lifts the throttle. The connection stays up.",
}

#: What a stall does, per routine: the stall modal shows the one chosen.
STALL_EFFECTS = {
    "header_sync": "Its header_sync routine stops taking commands for that long. Frames are "
    "still read, so what it owes the peer piles up in its command queue; a never-drop command "
    "that no longer fits parks it. The connection stays up.",
    "block_sync": "Its block_sync routine stops reading and requesting for that long, like "
    "local congestion: the peer's answers wait in its send window and nothing is blamed on "
    "the peer. The connection stays up.",
}


#: Textual's own palette entries that duplicate ours: its "Theme" lists every built-in theme
#: (ours are the ones designed for the console's state colours) and its "Keys" opens a help
#: panel that knows nothing about the console's keys. The console's entries of the same names
#: replace them, so the palette has one of each.
REPLACED_SYSTEM_COMMANDS = frozenset({"Theme", "Keys"})


class ConsoleThemes(ThemeProvider):
    """The palette's theme picker, offering the console's themes only, in ``t`` order."""

    @property
    def commands(self) -> list[tuple[str, Callable[[], None]]]:
        app = self.app
        names = app.theme_names if isinstance(app, ZakuraConsole) else []

        def set_theme(name: str) -> None:
            self.app.theme = name

        return [(name, partial(set_theme, name)) for name in names]


class ZakuraConsole(App[None]):
    """The console app."""

    TITLE = "zakura console"
    CSS_PATH = Path(__file__).parent / "console.tcss"
    MODES = {
        "overview": OverviewScreen,
        "peers": PeersScreen,
        "journal": JournalScreen,
        "misbehavior": MisbehaviorScreen,
        "parked": ParkedScreen,
        "diagnostics": DiagnosticsScreen,
        "charts": ChartsScreen,
    }
    DEFAULT_MODE = "overview"
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", title, show=False) for key, mode, title in VIEWS),
        Binding("space", "toggle_pause", "Pause"),
        Binding("d", "disconnect", "Disconnect"),
        Binding("p", "panic", "Panic"),
        Binding("k", "park", "Park"),
        Binding("s", "stall", "Stall"),
        Binding("w", "throttle", "Throttle"),
        # After the keys that act on any peer: it only acts on a parked one, so a narrow
        # footer cuts it first (``?`` and the Parked view's summary still name it).
        Binding("u", "unpark", "Unpark"),
        Binding("t", "cycle_theme", "Theme"),
        Binding("question_mark", "help", "Keys"),
        Binding("q", "quit", "Quit"),
        # Textual treats Ctrl+C as a key; an operator expects it to quit.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        client: NodeClient,
        *,
        refresh_interval: float = 0.25,
        theme: str | None = None,
        ascii: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        #: The symbols every view draws state with; ``ascii`` (``--ascii``) makes them
        #: letters, for bare terminals and serial consoles.
        self.glyphs = ASCII_GLYPHS if ascii else UNICODE_GLYPHS
        self.policy = ActionPolicy(read_only=client.read_only)
        self.refresh_interval = refresh_interval
        self.state = ConsoleState(read_only=client.read_only)
        #: The last hour of snapshot numbers, one row per poll, for the Charts view (7);
        #: fed while paused too, so resuming leaves no gap.
        self.history = History(capacity_for(refresh_interval))
        self._themes = [t.name for t in load_themes()]
        self._initial_theme = theme or self._themes[0]
        self._polling = False

    # ------------------------------------------------------------------ notifications
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every notification is plain text with control characters removed.

        Messages carry peer-supplied text (close reasons, labels, the node's own error
        sentences that quote a peer): read as markup, ``[bold red]x[/`` would raise or
        restyle the toast; written raw, an ANSI/OSC escape would reach the terminal.
        """
        super().notify(
            clean(message, limit=NOTIFY_LIMIT),
            title=clean(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    # ------------------------------------------------------------------ themes
    @property
    def theme_names(self) -> list[str]:
        """The console's themes, in the order ``t`` cycles them."""
        return list(self._themes)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """The console's colour tokens for any theme that lacks them (see
        :func:`themes.variable_defaults`): no theme can break a view's stylesheet."""
        return variable_defaults(self.current_theme)

    def search_themes(self) -> None:
        """The palette's "Theme": pick one of the console's themes by name."""
        self.push_screen(CommandPalette(providers=[ConsoleThemes], placeholder="Theme..."))

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        for t in load_themes():
            self.register_theme(t)
        self.theme = self._initial_theme
        self.set_interval(self.refresh_interval, self.poll)
        self.poll_soon()
        # The app's own objects (widgets, styles, themes, imported modules) live as long as
        # it does: moved out of the collector's reach, a full collection walks only what the
        # frames allocate. With 1,000 peers a frame's rows and document pushed one every few
        # frames, each walking the whole process (bench scale_peers, docs/ARCHITECTURE.md).
        gc.freeze()

    def poll_soon(self) -> None:
        """Fetch a frame now, in a worker: a slow client never blocks key handling."""
        self.run_worker(self.poll(), group="poll", exit_on_error=False)

    def chart_source(self) -> ChartSource:
        """What the Charts view plots: the live history, up to now (a replay overrides it
        with the whole recording and its cursor)."""
        return live_source(self.history)

    def view_titles(self) -> list[tuple[str, str]]:
        return [(key, title) for key, _mode, title in VIEWS]

    async def poll(self) -> None:
        """Fetch one frame of data and render it (skipped while a fetch is running)."""
        if self._polling or not self.is_running:
            return
        self._polling = True
        try:
            snapshot = await self._read_snapshot()
            rows = await self.client.journal_since(self.state.journal_seq)
        except ClientUnavailable as exc:
            # A remote node went away: say so where the operator looks, once per change,
            # and keep polling (the client decides when it really tries again).
            if self.state.link_down is None:
                self.notify(f"lost the node: {exc}", severity="warning", timeout=4)
            self.state.link_down = exc.short
            self.render_current()
            return
        except Exception as exc:  # a failing client must not kill the console
            self.notify(f"cannot read the node: {exc}", severity="error", timeout=3, markup=False)
            return
        finally:
            self._polling = False
        if self.state.link_down is not None:
            self.state.link_down = None
            self.notify("the node is back", timeout=3)
        self.history.add_snapshot(snapshot)
        if self.state.paused or not self.is_running:
            return
        self.state.set_snapshot(snapshot)
        self.state.add_journal(rows)
        self.render_current()

    async def _read_snapshot(self) -> Snapshot:
        """The brief document when the client has it (peers cut to their rows, the open peer
        detail's peer in full: :class:`~console.client.BriefSnapshots`), else the full one."""
        if isinstance(self.client, BriefSnapshots):
            return await self.client.brief_snapshot(self.detail_peer())
        return await self.client.snapshot()

    def detail_peer(self) -> str | None:
        """The peer of the topmost view that draws one peer's full entry (under a modal too)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ConsoleScreen):
                return screen.detail_peer()
        return None

    def render_current(self) -> None:
        if not self.is_running:
            return
        try:
            screen = self.screen
        except ScreenStackError:  # a timer tick while the app shuts down
            return
        if isinstance(screen, ConsoleScreen):
            screen.refresh_view()

    # ------------------------------------------------------------------ simple actions
    def action_toggle_pause(self) -> None:
        self.state.paused = not self.state.paused
        self.render_current()
        if not self.state.paused:
            self.poll_soon()

    def action_cycle_theme(self) -> None:
        names = self._themes
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=1.5)

    def help_rows(self) -> list[tuple[str, str]]:
        rows = [(key, f"{title} view") for key, _mode, title in VIEWS]
        rows += [
            ("space", "pause / resume updates (PAUSED shows in the status bar)"),
            ("d", "disconnect the selected peer (asks first)"),
            ("p", "panic a routine of the selected peer (pick the routine, asks first)"),
            ("k", "park the selected peer's header-sync (asks first; Journal: kind filter)"),
            ("u", "unpark the selected peer's parked header-sync: a new session (asks first)"),
            (
                "s",
                "stall the selected peer's header_sync or block_sync reads for N seconds "
                "(pick the routine, asks N, 1-600)",
            ),
            (
                "w",
                "throttle the selected peer's bandwidth to N KiB/s (asks N, default 64; "
                "0 lifts it)",
            ),
            ("t", f"cycle themes: {', '.join(self._themes)}"),
            ("?", "this help"),
            ("ctrl+p", "command palette: every action and view by name"),
            ("q", "quit (stops everything the console started)"),
        ]
        if self.policy.read_only:  # the keys answer with the refusal; say so up front
            faults = {"d", "p", "k", "u", "s", "w"}
            rows = [(k, f"{w} (disabled: --read-only)" if k in faults else w) for k, w in rows]
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            # Only the view's own keys: Screen's inherited focus/copy keys are noise here.
            own = type(screen).__dict__.get("BINDINGS", [])
            rows += [
                (b.key_display or b.key, b.tooltip or b.description)
                for b in own
                if isinstance(b, Binding) and b.description
            ]
        return rows

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows()))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title not in REPLACED_SYSTEM_COMMANDS:
                yield command
        for key, mode, title in VIEWS:
            yield SystemCommand(
                f"View: {title}",
                f"switch to the {title} view ({key})",
                lambda mode=mode: self.switch_mode(mode),
            )
        yield SystemCommand(
            "Disconnect selected peer", "close its connection (d)", self.action_disconnect
        )
        yield SystemCommand(
            "Panic a routine of the selected peer",
            "raise an exception inside it (p)",
            self.action_panic,
        )
        yield SystemCommand(
            "Park header-sync of selected peer",
            "park its header_sync routine (k)",
            self.action_park,
        )
        yield SystemCommand(
            "Unpark header-sync of selected peer",
            "start its parked header_sync again, on the same connection (u)",
            self.action_unpark,
        )
        yield SystemCommand(
            "Stall sync reads of selected peer",
            "hold its header_sync or block_sync reads for N seconds (s)",
            self.action_stall,
        )
        yield SystemCommand(
            "Throttle bandwidth of selected peer",
            "read from it at N KiB/s at most; 0 lifts it (w)",
            self.action_throttle,
        )
        yield SystemCommand(
            "Pause / resume updates", "freeze the view (space)", self.action_toggle_pause
        )
        yield SystemCommand(
            "Theme",
            f"pick a theme: {', '.join(self._themes)} (t cycles them)",
            self.search_themes,
        )
        yield SystemCommand("Keys", "every key and what it does (?)", self.action_help)

    # ------------------------------------------------------------------ fault actions
    def selected_peer(self) -> str | None:
        screen = self.screen
        return screen.selected_peer() if isinstance(screen, ConsoleScreen) else None

    def action_disconnect(self) -> None:
        self.request_action("disconnect")

    def action_panic(self) -> None:
        self.request_action("panic")

    def action_park(self) -> None:
        self.request_action("park")

    def action_unpark(self) -> None:
        self.request_action("unpark")

    def action_stall(self) -> None:
        self.request_action("stall")

    def action_throttle(self) -> None:
        self.request_action("throttle")

    def request_action(self, kind: str) -> None:
        """The one entry point for actions: policy first, then target, confirm, act."""
        if not self.policy.allows(kind):
            self.notify(
                f"read-only console: {kind} is disabled (started with --read-only)",
                severity="error",
                timeout=4,
            )
            return
        label = self.selected_peer()
        if label is None:
            screen = self.screen
            left = screen.departed_peer() if isinstance(screen, ConsoleScreen) else None
            message = (
                f"{left} already left: nothing to {kind}"
                if left
                else "select a peer first (Peers view, 2)"
            )
            self.notify(message, severity="warning", timeout=3)
            return
        self.run_worker(self._act(kind, label), group="action", exclusive=True)

    async def _act(self, kind: str, label: str) -> None:
        peer = self.state.peer(label)
        if peer is None:
            self.notify(f"{label} is no longer connected", severity="warning")
            return
        service: str | None = None
        routines = [(r["service"], r["state"]) for r in peer.get("routines") or ()]  # type: ignore[attr-defined]
        # The latest generation of each service wins (a restarted routine lists its old one).
        latest: dict[str, str] = dict(routines)
        if kind == "panic":
            running = [(s, st) for s, st in routines if st == "running"]
            if not running:
                self.notify(f"{label} has no running routine to panic", severity="warning")
                return
            service = await self.push_screen_wait(PickServiceScreen(label, running))
            if service is None:
                return
        elif kind in ("park", "unpark"):
            service = HEADER_SYNC
            refusal = _header_sync_refusal(kind, label, latest.get(service))
            if refusal:
                self.notify(refusal, severity="warning")
                return
        target = f"peer {label} at {peer['addr']} ({peer['direction']})"
        request = ActionRequest(kind, label, service)
        if kind == "stall":
            states = [(svc, latest.get(svc)) for svc in STALL_SERVICES]
            stallable = [svc for svc, st in states if st == "running"]
            if not stallable:
                self.notify(_stall_refusal(label, states), severity="warning")
                return
            choice = await self.push_screen_wait(
                StallScreen(label, target, states, STALL_EFFECTS, stallable[0])
            )
            if choice is None:
                return
            request = ActionRequest(kind, label, choice.service, choice.seconds)
        elif kind == "throttle":
            rate = await self.push_screen_wait(
                ThrottleScreen(f"Throttle reads from {label}?", f"{target}\n{ACTION_EFFECTS[kind]}")
            )
            if rate is None:
                return
            request = ActionRequest(kind, label, rate=rate)
        else:
            detail = f"{target}\n" + ACTION_EFFECTS.get(
                kind,
                f"An exception is raised inside its {service} routine: a panic, which "
                "closes that peer's connection only.",
            )
            title = request.describe().capitalize() + "?"
            if not await self.push_screen_wait(ConfirmScreen(title, detail)):
                return
        # Re-check the target against fresh data: it may have left while the modal was open.
        fresh = await self.client.snapshot()
        if not any(p["label"] == label for p in fresh["peers"]):
            self.notify(f"{label} left before the action: nothing done", severity="warning")
            return
        self.notify(f"{request.describe()} ...", timeout=2)
        result = await self.client.act(request)
        self.notify(result.message, severity="information" if result.ok else "error", timeout=6)
        self.poll_soon()


def _header_sync_refusal(kind: str, label: str, state: object) -> str | None:
    """Why ``k`` or ``u`` cannot act on this peer's header sync (``None`` when it can).

    Said before the confirmation, from the frame the operator sees, so a key that would only
    be refused by the node does not ask first; the node checks again when it acts.
    """
    if state is None:
        return f"{label} has no {HEADER_SYNC} routine to {kind}"
    if kind == "unpark":  # only a parked routine resumes; the node says the same words
        return (
            None if state == "parked" else f"{label}: {HEADER_SYNC} is not parked (it is {state})"
        )
    if kind == "park" and state == "parked":
        return f"{label}: {HEADER_SYNC} is already parked"
    if state != "running":  # the node parks and stalls running routines only
        return f"{label}: {HEADER_SYNC} is {state}, nothing to {kind}"
    return None


def _stall_refusal(label: str, states: list[tuple[str, str | None]]) -> str:
    """Why ``s`` has nothing to stall on this peer: each stallable service and its state."""
    missing = [svc for svc, st in states if st is None]
    if len(missing) == len(states):
        return f"{label} has no {' routine and no '.join(missing)} routine to stall"
    said = ", ".join(f"{svc} is {st or 'absent'}" for svc, st in states)
    return f"{label}: {said}, nothing to stall"  # the node stalls running routines only
