"""Where the console's own node runs: on its own event loop, in a thread of the console process.

Decided by measurement (docs/ARCHITECTURE.md, "The process model"; issue 3 item 6): the node
runs on its own event loop in a thread (:class:`NodeThread`), the app on the main thread's
loop, and :class:`ThreadedClient` carries every client call across with
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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from console.client import (
    ActionRequest,
    ActionResult,
    InProcessClient,
    JournalRow,
    NodeClient,
    Snapshot,
)
from node_core.observe.gcpause import freeze_startup_heap
from zakura.process import finish_leftover_tasks

if TYPE_CHECKING:
    from node_core.node import Node
    from zakura.local_network import LocalNetwork

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long the node thread gets to stop everything before we give up on it.
THREAD_STOP_SECS = 15.0
#: GIL switch interval while the app and the node thread share the process (see
#: :func:`gil_switch_interval`).
NODE_THREAD_SWITCH_INTERVAL = 0.001


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
                freeze_startup_heap()
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
