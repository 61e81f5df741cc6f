"""``zakura console``: the app at once, the local network coming up behind it.

The operator should see the console within a blink, not after six node processes have booted, so
:func:`run_console` starts the Textual app first (it says "waiting for the node..." in the
status bar) and brings up the local testnet and the operator's own node in the background. The
app gets a :class:`PendingClient` from the start, which delegates to the real client once the
node is up; until then :class:`LauncherConsole` skips its polls, so the views keep saying
"waiting for the node...", no error notifications appear while the network boots, and keys
(``q`` included) work from the first frame.

Where the node runs (docs/ARCHITECTURE.md, "The process model"; issue 3 item 6) was decided by
measurement: the node runs on its own event loop in a thread (:class:`NodeThread`), the app on
the main thread's loop, and :class:`ThreadedClient` carries every client call across with
:func:`asyncio.run_coroutine_threadsafe`; while the app runs, the GIL switch interval is 1 ms
(:func:`gil_switch_interval`). ``python -m bench --only console_looplag`` measures the node
loop's lag p99 in one run: a 4-peer testnet, an in-process peer disconnected by a fault and
redialing every second, a 3 MiB/s stream into the node, the console on the Peers view at 4 Hz,
10 s phases interleaved. Medians of p99 on this 2-CPU machine, console open vs headless:

    ==========================  ========  ========  ========  ========
    run (``--repeat``)          headless  shared    thread    thread
                                          loop      5 ms GIL  1 ms GIL
    ==========================  ========  ========  ========  ========
    busy machine (2)            4.4 ms    11.7 ms   7.4 ms    3.7 ms
    busy machine (2)            3.4 ms    5.0 ms    5.2 ms    3.7 ms
    quiet machine (4)           1.2 ms    5.4 ms    5.4 ms    2.9 ms
    quiet machine (4)           1.3 ms    5.0 ms    5.5 ms    2.5 ms
    ==========================  ========  ========  ========  ========

One shared loop stays under the absolute goal (25 ms) but not under 2x headless (1.5x-4.4x,
up to 12x in single phases): each 4 Hz refresh renders for several milliseconds in one go,
and every node timer due meanwhile waits for it. A node thread with CPython's default 5 ms
switch interval is not much better, since a woken node thread waits up to 5 ms for the app's
thread to let go of the GIL. With 1 ms it is 0.8x-2.3x headless, usually within the goal, and
never worse than the others (0.5 ms and 0.25 ms measured no better). A side benefit: Textual's
eager task factory (installed on its loop on Python >= 3.12) never touches the node's loop.
Costs: client calls cross threads (a snapshot is built on the node's loop and handed over as
a fresh document, so nothing is shared mutably), and the testnet is started from the node
thread, which lives until everything has stopped (PDEATHSIG fires when the forking thread
ends).

Safety rules this module keeps, because a console that leaks node processes is worse than none:

- Quitting by ``q``, by Ctrl+C (a key while Textual owns the terminal, so
  :class:`LauncherConsole` binds it to quit), by SIGTERM/SIGHUP/SIGINT, or by the app crashing
  all leave :meth:`ZakuraConsole.run_async`;
  the ``finally`` in :func:`run_console` then stops the node and every testnet process. The
  children also carry PDEATHSIG (see :mod:`node_core.testnet`) for the cases where no
  ``finally`` runs at all.
- Logging goes to a file, configured before the app starts: Textual swaps the process-wide
  stdout and stderr while it runs, and a stream handler made earlier would paint over the UI.
- Errors found before the app starts (an unknown theme, an unwritable log file) are
  :class:`~node_core.cli.UsageError`\\ s: one line naming the flag, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from console.app import ZakuraConsole
from console.client import (
    ActionRequest,
    ActionResult,
    InProcessClient,
    JournalRow,
    NodeClient,
    Snapshot,
)

if TYPE_CHECKING:
    from node_core.node import Node
    from node_core.testnet import Testnet
    from node_core.transport.service import Service

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REFRESH = 0.25
#: Testnet nodes keep this many connections among themselves (the operator node dials them all).
TESTNET_TARGET_PEERS = 4
#: The network starts after the first frame, or after this long if the frame never comes.
FIRST_FRAME_WAIT_SECS = 2.0
#: How long the node thread gets to stop everything before we give up on it.
THREAD_STOP_SECS = 15.0
#: GIL switch interval while the app and the node thread share the process (see
#: :func:`gil_switch_interval`).
NODE_THREAD_SWITCH_INTERVAL = 0.001
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


class ThreadedClient:
    """Runs every call of a client on the node's event loop, which lives in another thread.

    The inner client (an :class:`~console.client.InProcessClient`) reads node state, so it must
    run on the node's loop; this wrapper submits each coroutine there with
    :func:`asyncio.run_coroutine_threadsafe` and awaits the result on the caller's loop.
    Cancelling the caller cancels the work on the node's loop too.
    """

    def __init__(self, inner: NodeClient, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop

    @property
    def read_only(self) -> bool:
        return self._inner.read_only

    @property
    def description(self) -> str:
        return f"{self._inner.description} (own thread)"

    async def _on_node(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def snapshot(self) -> Snapshot:
        return await self._on_node(self._inner.snapshot())

    async def journal_since(self, seq: int, limit: int = 500) -> list[JournalRow]:
        return await self._on_node(self._inner.journal_since(seq, limit))

    async def act(self, request: ActionRequest) -> ActionResult:
        return await self._on_node(self._inner.act(request))


# ---------------------------------------------------------------------- the network
class LocalNetwork:
    """The local testnet (child processes) and the operator's node, on one event loop.

    The operator node runs with fault injection enabled (the console's ``d`` and ``p``),
    bootstraps from testnet node 0 and aims for one connection per testnet node. It always
    starts at genesis: with a chain on node 0 it has headers to sync, which is what the
    Overview's header-sync panel is there to show.

    Args:
        peers: Number of testnet node processes.
        root: Data root: the testnet in ``root/testnet``, the operator node in ``root/node``.
        extra_services: Extra services for the operator node (benchmarks add a stream).
        log_level: ``--log-level`` of the testnet children (they log to their own files).
        blocks: Testnet node 0 pre-generates the seeded chain up to this height (0: none).
            The testnet is ready only after that (:data:`~node_core.testnet.PREGEN_SECS_PER_BLOCK`
            stretches node 0's ready timeout), but the app is already on screen by then.
        mine_interval: Testnet node 0 mines a block every this many seconds (None: never).
    """

    def __init__(
        self,
        peers: int,
        root: Path,
        *,
        extra_services: Sequence[Service] = (),
        log_level: str = "info",
        blocks: int = 0,
        mine_interval: float | None = None,
    ) -> None:
        from node_core.testnet import Testnet

        self.peers = peers
        self.root = root
        self.extra_services = tuple(extra_services)
        self.testnet: Testnet = Testnet(
            peers,
            data_dir=root / "testnet",
            target_peers=TESTNET_TARGET_PEERS,
            log_level=log_level,
            blocks=blocks,
            mine_interval=mine_interval,
        )
        self.node: Node | None = None

    async def start(self) -> Node:
        """Start the testnet, then the operator node; on failure stop what was started.

        Raises:
            node_core.testnet.TestnetError: A testnet node did not come up.
            OSError, node_core.identity.IdentityError: The operator node could not start.
        """
        from node_core.node import Node, NodeConfig
        from node_core.testnet import HOST

        try:
            await self.testnet.start()
            log.info(
                "testnet up: %s",
                ", ".join(f"{n.label} {n.listen} pid {n.pid}" for n in self.testnet.nodes),
            )
            node = Node(
                NodeConfig(
                    data_dir=self.root / "node",
                    listen_host=HOST,
                    listen_port=0,
                    bootstrap=((HOST, self.testnet.nodes[0].listen_port),),
                    allow_faults=True,
                    target_peers=self.peers,
                ),
                extra_services=self.extra_services,
            )
            self.node = node
            await node.start()
        except BaseException:
            await self.stop()
            raise
        log.info("operator node %s listening on %s", node.label, node.listen)
        return node

    async def stop(self) -> None:
        """Stop the operator node, then every testnet process; idempotent, never raises."""
        try:
            if self.node is not None:
                await self.node.stop()
        except Exception:
            log.exception("stopping the operator node failed")
        finally:
            await self.testnet.stop()

    @property
    def child_pids(self) -> list[int]:
        """Pids of the testnet processes started so far (for the exit report and tests)."""
        return [n.pid for n in self.testnet.nodes]


# ---------------------------------------------------------------------- where the node runs
@contextlib.contextmanager
def gil_switch_interval(seconds: float) -> Iterator[None]:
    """Set :func:`sys.setswitchinterval` for the block, then restore it.

    Why: with the node in its own thread, the app's rendering holds the GIL in long stretches;
    a node thread woken by a timer or a socket waits up to the switch interval (5 ms by
    default) before CPython makes the app's thread let go. 1 ms bounds that wait; the
    benchmark shows the node's loop-lag p99 going from 1.5x-4.4x headless to 0.8x-2.3x.
    Process-wide, so only the console process (never the library) sets it.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class NodeThread:
    """An event loop in its own thread, running a :class:`LocalNetwork` until told to stop.

    The thread starts the testnet itself, so the testnet's children get PDEATHSIG from this
    thread (which lives until everything is stopped), and all node work happens on its loop.
    :meth:`submit` runs any other coroutine on that loop (benchmarks put load there).

    Attributes:
        started: Resolves to the running node, or to the error that stopped it from starting
            (cancelled when stopped before it was up).
        ended: Resolves when the thread's loop has finished (everything stopped).
    """

    def __init__(self, network: LocalNetwork) -> None:
        self.network = network
        self.started: concurrent.futures.Future[Node] = concurrent.futures.Future()
        self.ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._loop_ready = threading.Event()
        self._stop_requested = False
        self._thread = threading.Thread(target=self._run, name="zakura-node", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._loop_ready.wait()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the node's loop; the future resolves in the caller's thread."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the node thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def request_stop(self) -> None:
        """Ask the thread to stop the network and end (from any thread; idempotent)."""
        self._stop_requested = True
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; ``True`` when it did (or never started)."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            log.exception("the node thread failed")
            self._settle(exc)
        finally:
            self._loop_ready.set()
            self.ended.set_result(None)

    async def _main(self) -> None:
        from node_core.cli import finish_leftover_tasks

        self.loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        if self._stop_requested:
            stop.set()
        self._loop_ready.set()
        starting = asyncio.ensure_future(self.network.start())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                if (exc := starting.exception()) is not None:
                    self._settle(exc)
                    return
                self._settle(starting.result())
                await stopper
        finally:
            starting.cancel()
            stopper.cancel()
            with contextlib.suppress(BaseException):
                await starting
            self._settle(None)
            await self.network.stop()
            await finish_leftover_tasks()

    def _settle(self, outcome: Node | BaseException | None) -> None:
        """Resolve :attr:`started` once: the node, the start error, or cancelled (``None``)."""
        if self.started.done():
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            if outcome is None:
                self.started.cancel()
            elif isinstance(outcome, BaseException):
                self.started.set_exception(outcome)
            else:
                self.started.set_result(outcome)


class ThreadBackend:
    """The node, on its own event loop in a :class:`NodeThread`, behind the app."""

    def __init__(self, network: LocalNetwork) -> None:
        self.network = network
        self.thread = NodeThread(network)

    async def start(self, read_only: bool) -> NodeClient:
        """Start the thread and the network; a client for the app's loop once the node is up."""
        self.thread.start()
        # shield: cancelling this wait must not cancel the thread's own future.
        node = await asyncio.shield(asyncio.wrap_future(self.thread.started))
        assert self.thread.loop is not None
        return ThreadedClient(InProcessClient(node, read_only=read_only), self.thread.loop)

    async def wait_ended(self) -> None:
        """Return when the node thread has ended (after :meth:`stop`, or on its own)."""
        await asyncio.shield(asyncio.wrap_future(self.thread.ended))

    async def stop(self) -> None:
        """Stop the network (from any state, also while it starts) and wait for the thread."""
        self.thread.request_stop()
        if not await asyncio.to_thread(self.thread.join, THREAD_STOP_SECS):
            log.error("the node thread did not stop within %.0f s", THREAD_STOP_SECS)


# ---------------------------------------------------------------------- the app
class LauncherConsole(ZakuraConsole):
    """The console as ``zakura console`` runs it: over a :class:`PendingClient`.

    What it adds to the app, and why:

    - Polls are skipped until the node is attached: there is no snapshot document to show
      before the node exists, which the views already render as "waiting for the node...".
    - :attr:`first_frame` is set (and the time since process start logged) once the first
      frame is on screen; the launcher starts the network only then.
    """

    def __init__(
        self,
        client: PendingClient,
        *,
        refresh_interval: float = DEFAULT_REFRESH,
        theme: str | None = None,
        ascii: bool = False,
    ) -> None:
        super().__init__(client, refresh_interval=refresh_interval, theme=theme, ascii=ascii)
        self.pending = client
        self.first_frame = asyncio.Event()

    async def poll(self) -> None:
        if self.pending.attached:
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


async def _bring_up(
    app: LauncherConsole,
    client: PendingClient,
    backend: ThreadBackend,
    read_only: bool,
    log_file: Path,
) -> None:
    """Start the network once the first frame is on screen, then hand the node to the app.

    If it cannot start, or the node thread ends by itself, end the app with one line that
    says why and where the log is.
    """
    from node_core.testnet import TestnetError

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FIRST_FRAME_WAIT_SECS):
            await app.first_frame.wait()
    try:
        inner = await backend.start(read_only)
    except TestnetError as exc:
        _give_up(app, client, str(exc), exc.exit_code, log_file)
        return
    except Exception as exc:
        log.exception("the operator node did not start")
        _give_up(app, client, f"the node did not start: {exc}", 1, log_file)
        return
    client.attach(inner)
    app.node_attached()
    log.info("console attached to %s", inner.description)
    # The node thread only ends when told to; if it ends by itself, the console is blind.
    await backend.wait_ended()
    _give_up(app, client, "the node stopped unexpectedly", 1, log_file)


def _give_up(
    app: LauncherConsole, client: PendingClient, message: str, code: int, log_file: Path
) -> None:
    log.error("%s", message)
    client.fail(message)
    app.exit(return_code=code, message=f"zakura console: error: {message} (log: {log_file})")


# ---------------------------------------------------------------------- entry point
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
        from node_core.cli import UsageError

        raise UsageError("--theme", f"unknown theme {name!r} (choose from {', '.join(names)})")


def check_log_file(path: Path) -> None:
    from node_core.cli import UsageError, describe

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError("--log-file", f"cannot write {path} ({describe(exc)})") from None


class NotATerminal(Exception):
    """stdin or stdout is not a terminal, so there is nowhere to draw the app."""


def check_terminal() -> None:
    """Refuse early: Textual on a pipe would write escape codes into someone's log file."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise NotATerminal(
            "the console draws a full-screen UI and needs a terminal on stdin and stdout "
            "(for a plain-text view use `zakura demo`)"
        )


async def run_console(args: argparse.Namespace) -> int:
    """``zakura console``: the app now, the network behind it, everything stopped at the end.

    Args:
        args: Parsed flags (``peers``, ``data_dir``, ``refresh``, ``read_only``, ``theme``,
            ``ascii``, ``log_file``, ``log_level``, ``blocks``, ``mine_interval``).

    Returns:
        The exit code: 0 after a normal quit, 1 when the app crashed or the node failed, 2
        when a testnet node rejected its input.

    Raises:
        node_core.cli.UsageError: Bad input found before the app started.
        NotATerminal: stdin or stdout is not a terminal.
    """
    from node_core.cli import check_data_dir, finish_leftover_tasks

    check_theme(args.theme)
    if args.data_dir is not None:
        check_data_dir(args.data_dir)
    if args.log_file is not None:
        check_log_file(args.log_file)
    check_terminal()
    owns_root = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="zakura-console-")) if owns_root else Path(args.data_dir)
    # An owned temp dir is removed only after a clean exit: otherwise its logs explain why.
    remove_root = False
    handler: logging.Handler | None = None
    try:
        log_file = Path(args.log_file) if args.log_file is not None else root / "console.log"
        handler = configure_logging(log_file, args.log_level)
        log.info(
            "zakura console starting: %d peers, node 0 with %d blocks mining every %s, data in %s",
            args.peers,
            args.blocks,
            "(never)" if args.mine_interval is None else f"{args.mine_interval:g} s",
            root,
        )

        network = LocalNetwork(
            args.peers,
            root,
            log_level=args.log_level,
            blocks=args.blocks,
            mine_interval=args.mine_interval,
        )
        backend = ThreadBackend(network)
        chain = f" (node 0 pre-generates {args.blocks:,} blocks)" if args.blocks else ""
        client = PendingClient(
            read_only=args.read_only,
            starting=f"starting a local testnet of {args.peers} peers{chain} in {root}",
        )
        app = LauncherConsole(
            client,
            refresh_interval=args.refresh,
            theme=default_theme(args.theme, os.environ),
            ascii=bool(getattr(args, "ascii", False)),
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, app.exit)
        bring_up = asyncio.ensure_future(_bring_up(app, client, backend, args.read_only, log_file))
        try:
            with gil_switch_interval(NODE_THREAD_SWITCH_INTERVAL):
                await app.run_async()
        finally:
            log.info("console closed (return code %s); stopping everything", app.return_code)
            bring_up.cancel()
            with contextlib.suppress(BaseException):
                await bring_up
            await backend.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
            await finish_leftover_tasks()
        code = app.return_code or 0
        log.info(
            "stopped: operator node and testnet pids %s; exit code %d", network.child_pids, code
        )
        remove_root = owns_root and code == 0
        return code
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        elif owns_root:
            print(f"zakura console: logs kept in {root}", file=sys.stderr, flush=True)
