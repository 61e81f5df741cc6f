"""``zakura chaos run --console``: the fleet console over a scenario's cluster while it runs.

Why in the same process: the console must follow the cluster as the scenario breaks it. A
restarted node comes back with a fresh operator token and, when its old port was taken, a new
API address; after every step the console's client for each node is pointed at where that
node is now (:meth:`ScenarioWatch.follow`). Paused and killed nodes show as unreachable rows in
the Fleet view, which is the point of watching.

The scenario runs as a task beside the app. Its progress goes to notifications and to the
Fleet view's summary line (the terminal belongs to the console, so nothing is printed while it
is open); the lines are kept and printed after the console closes, with the verdict table.
Quitting the console before the scenario ends stops it: the cluster is torn down and the run
ends as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from console.fleet import Fleet
    from console.fleet_app import FleetConsole
    from console.remote import RemoteNodeClient
    from zakura.chaos.cluster import Cluster

T = TypeVar("T")

#: What each node's API token is called in its data dir (the testnet writes it there).
TOKEN_FILE = "operator.token"


def node_name(index: int, hostile: bool) -> str:
    """A node's Fleet row name: its cluster index, the number scenario targets use."""
    return f"node-{index:02d}" + (" hostile" if hostile else "")


class ScenarioWatch:
    """The Fleet console over ``cluster``, told what the scenario is doing."""

    def __init__(
        self, cluster: Cluster, *, theme: str | None, ascii: bool, refresh_interval: float
    ) -> None:
        self.cluster = cluster
        self.theme = theme
        self.ascii = ascii
        self.refresh_interval = refresh_interval
        #: Every line said while the console was open, printed after it closes.
        self.lines: list[str] = []
        self._clients: list[RemoteNodeClient] = []
        self._app: FleetConsole | None = None

    def _where(self, index: int) -> tuple[str, str]:
        info = self.cluster.node(index)
        token = (info.data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
        return f"http://{info.api}", token

    def _fleet(self) -> Fleet:
        from console.fleet import Fleet, FleetMember
        from console.remote import RemoteNodeClient

        members = []
        for info in self.cluster.nodes:
            url, token = self._where(info.index)
            client = RemoteNodeClient(url, token)
            self._clients.append(client)
            members.append(FleetMember(node_name(info.index, not info.honest), client))
        return Fleet(members)

    def follow(self) -> None:
        """Point each node's client at where the node is now (a restart moves its token and
        may move its port); unchanged clients are left alone."""
        for index, client in enumerate(self._clients):
            with contextlib.suppress(OSError):
                client.retarget(*self._where(index))

    def say(self, line: str, *, ok: bool = True) -> None:
        """A progress line: a notification now, printed after the console closes."""
        self.lines.append(line)
        app = self._app
        if app is not None and app.is_running:
            app.notify(line, severity="information" if ok else "warning", timeout=5)

    def stage(self, text: str) -> None:
        """What the scenario is doing now, on the Fleet view's summary line."""
        if self._app is not None:
            self._app.banner = text
            self._app.render_current()

    async def run(self, scenario: Callable[[], Awaitable[T]]) -> T | None:
        """Open the console, run ``scenario`` beside it, keep the console open after it ends
        until the operator quits; the scenario's result, or None if they quit before it ended
        (the scenario is then cancelled)."""
        from console.fleet_app import FleetConsole
        from console.launcher import configure_logging

        fleet = self._fleet()
        log_file = Path(self.cluster.data_dir) / "console.log"
        handler = configure_logging(log_file, "info")
        await fleet.connect_all()
        app = FleetConsole(
            fleet,
            refresh_interval=self.refresh_interval,
            theme=self.theme,
            ascii=self.ascii,
        )
        app.title = "zakura chaos run"
        self._app = app
        result: list[T] = []

        async def drive() -> None:
            try:
                result.append(await scenario())
            except Exception as exc:  # shown, then raised again after the console closes
                self.say(f"error: {exc}", ok=False)
                self.stage(f"scenario stopped: {exc}  ·  q quits")
                raise

        task: asyncio.Task[None] | None = None

        def start() -> None:
            nonlocal task
            task = asyncio.ensure_future(drive())

        app.call_later(start)
        try:
            await app.run_async()
        finally:
            self._app = None
            logging.getLogger().removeHandler(handler)
            await fleet.close()
            if task is not None and not task.done():
                task.cancel()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return result[0] if result else None
