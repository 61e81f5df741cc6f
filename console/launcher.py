"""The console as ``zakura console`` runs it, and what every console command checks first.

``zakura console`` shows the app before its node exists (the command, in
:mod:`zakura.console_cmd`, brings the local network up behind it). So the app gets a
:class:`PendingClient` from the start, which delegates to the real client once the node is up;
until then :class:`LauncherConsole` skips its polls, so the views keep saying "waiting for the
node...", no error notifications appear while the network boots, and keys (``q`` included) work
from the first frame.

The checks below (:func:`check_theme`, :func:`check_log_file`, :func:`check_terminal`) and
:func:`configure_logging` are shared by every command that opens the console (``zakura
console``, ``zakura attach``): logging goes to a file, configured before the app starts,
because Textual swaps the process-wide stdout and stderr while it runs and a stream handler
made earlier would paint over the UI. An unusable option raises
:class:`~console.usage.UsageError` naming the flag, which the command line reports in one line
with exit code 2, like every other usage error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from console.client import ActionRequest, ActionResult, JournalRow, NodeClient, Snapshot
from console.fleet import Fleet, FleetMember
from console.fleet_app import FleetConsole
from console.usage import UsageError

log = logging.getLogger(__name__)

DEFAULT_REFRESH = 0.25
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"


class NodeUnavailable(Exception):
    """The node could not be started; the message says why (shown by the app as is)."""


# ---------------------------------------------------------------------- clients
class PendingClient:
    """A :class:`~console.client.NodeClient` that stands in until the node exists.

    ``snapshot()`` and ``journal_since()`` wait until :meth:`attach` (or :meth:`fail`) is
    called; ``act()`` never waits and refuses until the node is attached. After :meth:`fail`
    every call raises :class:`NodeUnavailable` (the launcher then ends the app with that
    message). The app itself does not call it while it is pending (see
    :meth:`LauncherConsole.poll`). Use on one event loop, the app's.

    Args:
        read_only: The console's ``--read-only``; known before the node exists, so the app's
            policy and the READ-ONLY marker are right from the first frame.
        starting: What :attr:`description` says until the node is attached.
    """

    def __init__(self, *, read_only: bool, starting: str = "starting the local network") -> None:
        self._read_only = read_only
        self._starting = starting
        self._inner: NodeClient | None = None
        self._error: str | None = None
        self._settled = asyncio.Event()

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def description(self) -> str:
        if self._inner is not None:
            return self._inner.description
        return self._error or self._starting

    @property
    def attached(self) -> bool:
        return self._inner is not None

    def attach(self, inner: NodeClient) -> None:
        """From now on every call goes to ``inner``; waiting calls resume."""
        self._inner = inner
        self._settled.set()

    def fail(self, message: str) -> None:
        """The node will never come: waiting and later calls raise :class:`NodeUnavailable`."""
        self._error = message
        self._settled.set()

    async def _client(self) -> NodeClient:
        await self._settled.wait()
        if self._inner is None:
            raise NodeUnavailable(self._error or "the node did not start")
        return self._inner

    async def snapshot(self) -> Snapshot:
        return await (await self._client()).snapshot()

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return await (await self._client()).journal_since(seq, limit)

    async def act(self, request: ActionRequest) -> ActionResult:
        if self._inner is None:
            return ActionResult(False, f"{request.describe()}: the node is not running yet")
        return await self._inner.act(request)


# ---------------------------------------------------------------------- the app
class LauncherConsole(FleetConsole):
    """The console as ``zakura console`` runs it: over a :class:`PendingClient`.

    What it adds to the app, and why:

    - It is a fleet console whose first member is your own node: view ``0`` lists it and
      every testnet node (:meth:`add_fleet` once the testnet is up), ``Enter`` opens any of
      them and ``0`` or ``Esc`` comes back. It opens on your node's Overview, as before.

    - Polls are skipped until the node is attached: there is no snapshot document to show
      before the node exists, which the views already render as "waiting for the node...".
    - :attr:`first_frame` is set (and the time since process start logged) once the first
      frame is on screen; the launcher starts the network only then.
    """

    DEFAULT_MODE = "overview"

    def __init__(
        self,
        client: PendingClient,
        *,
        refresh_interval: float = DEFAULT_REFRESH,
        theme: str | None = None,
        ascii: bool = False,
    ) -> None:
        fleet = Fleet([FleetMember("your node", client)])
        super().__init__(fleet, refresh_interval=refresh_interval, theme=theme, ascii=ascii)
        self.pending = client
        self.first_frame = asyncio.Event()

    def add_fleet(self, members: list[FleetMember]) -> None:
        """The testnet is up: list its nodes in the Fleet view beside yours."""
        self.fleet.members.extend(members)
        self.render_current()

    async def poll(self) -> None:
        if self.pending.attached or self.in_fleet_view:
            await super().poll()

    def node_attached(self) -> None:
        """Fetch the first frame of data now rather than at the next timer tick."""
        self.poll_soon()

    def on_ready(self) -> None:
        """Textual posts Ready right after the screen's first compositor refresh (the first
        frame written to the terminal), so this is the moment to note and to start the network.
        """
        since = process_age()
        log.info(
            "first frame drawn %s after process start",
            "(unknown time)" if since is None else f"{since:.2f} s",
        )
        self.first_frame.set()


# ---------------------------------------------------------------------- before the app starts
def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), or ``None`` where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rpartition(")")[2].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return time.time() - (btime + ticks / os.sysconf("SC_CLK_TCK"))


def configure_logging(path: Path, level: str) -> logging.Handler:
    """Every log record goes to ``path``; none to the terminal the app is drawing on.

    Returns:
        The file handler, for the caller to remove and close when the console ends.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(file_handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)
    return file_handler


#: ``COLORTERM`` values that promise 24-bit colour; any other (or none) gets the ``ansi``
#: theme unless ``--theme`` says otherwise.
TRUE_COLOUR = frozenset({"truecolor", "24bit"})


def default_theme(name: str | None, environ: Mapping[str, str]) -> str | None:
    """``--theme`` if given; else ``ansi`` on a terminal that does not say it has true colour.

    Over SSH, in browser terminals and in many multiplexers ``COLORTERM`` is unset: RGB
    colours are then approximated from a 256-colour cube (or lost), and the console's dim
    tones merge with its background. The terminal's own 16 colours are what its user tuned.
    ``None`` keeps the app's default (zakura-dark).
    """
    if name is not None:
        return name
    if environ.get("COLORTERM", "").strip().lower() in TRUE_COLOUR:
        return None
    from themes import ANSI_THEME

    return ANSI_THEME


def check_theme(name: str | None) -> None:
    """An unknown ``--theme`` is an input error found before the app starts."""
    if name is None:
        return
    from themes import load_themes

    names = [t.name for t in load_themes()]
    if name not in names:
        raise UsageError("--theme", f"unknown theme {name!r} (choose from {', '.join(names)})")


def check_log_file(path: Path) -> None:
    """A ``--log-file`` the console cannot write is an input error found before the app starts."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError("--log-file", f"cannot write {path} ({exc.strerror or exc})") from None


class NotATerminal(Exception):
    """stdin or stdout is not a terminal, so there is nowhere to draw the app."""


def check_terminal() -> None:
    """Refuse early: Textual on a pipe would write escape codes into someone's log file.

    A console served to a browser (``zakura attach --serve``) runs on pipes on purpose:
    textual-serve names its web driver in ``TEXTUAL_DRIVER``, which speaks a protocol, not
    escape codes, so that case passes."""
    if os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver"):
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise NotATerminal(
            "the console draws a full-screen UI and needs a terminal on stdin and stdout "
            "(for a plain-text view use `zakura demo`)"
        )
