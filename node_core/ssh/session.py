"""One interactive SSH session: the console in its own child process, on its own PTY.

The child (``zakura attach`` against the node's loopback API, with a token of the key's role)
is a separate process in its own session and process group, so a console that crashes,
hangs or leaks never touches the node; the node only copies bytes. Bytes are pumped here,
not by ``process.redirect``, so the session sees every keystroke (for the idle timeout) and
every window change (``TIOCSWINSZ`` on the PTY, then SIGWINCH to the console's group). When
either side ends, the other is ended: the client's channel is closed with the console's exit
status, or the console's process group gets SIGTERM, then SIGKILL after
:data:`KILL_GRACE` seconds, and is always reaped (no zombie).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncssh

__all__ = ["PtySession", "SessionEnd"]

log = logging.getLogger(__name__)

#: Seconds a console gets to exit after SIGTERM before SIGKILL.
KILL_GRACE = 2.0
#: Consoles run at this nice level: on a busy machine the node (what the consoles watch)
#: gets the CPU first, so watching it does not slow it down (bench/ssh_sessions.py).
CONSOLE_NICE = 10
_NICE = shutil.which("nice")
READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How a session ended: ``reason`` is ``console exited``, ``client closed`` or ``idle``."""

    reason: str
    exit_status: int | None
    pid: int


def set_window(fd: int, cols: int, rows: int) -> None:
    """Give the PTY a size (the kernel then signals SIGWINCH to its foreground group)."""
    cols, rows = max(int(cols), 1), max(int(rows), 1)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtySession:
    """Runs ``argv`` on a fresh PTY and connects it to one SSH process until either ends."""

    def __init__(
        self,
        process: asyncssh.SSHServerProcess[bytes],
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        idle_timeout: float,
    ) -> None:
        self.process = process
        self.argv = [_NICE, "-n", str(CONSOLE_NICE), *argv] if _NICE else list(argv)
        self.env = dict(env)
        self.idle_timeout = idle_timeout
        self.last_input = time.monotonic()
        self.child: asyncio.subprocess.Process | None = None
        self._master = -1

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.pid

    async def run(self) -> SessionEnd:
        cols, rows, _, _ = self.process.term_size
        master, slave = os.openpty()
        self._master = master
        try:
            set_window(slave, cols or 80, rows or 24)
            self.child = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=self.env,
                start_new_session=True,  # setsid: the PTY becomes its controlling terminal
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        pumps = [
            asyncio.create_task(self._pump_out(), name="ssh-pty-out"),
            asyncio.create_task(self._pump_in(), name="ssh-pty-in"),
        ]
        exited = asyncio.create_task(self.child.wait(), name="ssh-pty-wait")
        idle = asyncio.create_task(self._idle_watch(), name="ssh-pty-idle")
        pid = self.child.pid
        try:
            done, _ = await asyncio.wait(
                [exited, idle, pumps[1]], return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                # Let the last frame (e.g. an error message) reach the client.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pumps[0]), 1.0)
                return SessionEnd("console exited", exited.result(), pid)
            reason = "idle" if idle in done else "client closed"
            status = await self._end_child()
            return SessionEnd(reason, status, pid)
        finally:
            for task in (*pumps, idle, exited):
                task.cancel()
            await asyncio.gather(*pumps, idle, exited, return_exceptions=True)
            if self.child.returncode is None:
                await self._end_child()
            with contextlib.suppress(OSError):
                os.close(master)
            self._master = -1

    async def _end_child(self) -> int | None:
        """SIGTERM the console's group, SIGKILL it after the grace, and reap it."""
        child = self.child
        assert child is not None
        if child.returncode is not None:
            return child.returncode
        for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            try:
                return await asyncio.wait_for(child.wait(), wait)
            except TimeoutError:
                continue
        log.error("ssh session console pid %d did not exit after SIGKILL", child.pid)
        return None

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._master, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(self._master)

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(self._master, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_writer(self._master)

    async def _pump_out(self) -> None:
        """Console output -> client, with the channel's back-pressure."""
        stdout = self.process.stdout
        while True:
            try:
                data = os.read(self._master, READ_CHUNK)
            except BlockingIOError:
                await self._readable()
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # the console closed its side: it is gone
                    return
                raise
            if not data:
                return
            stdout.write(data)
            await stdout.drain()

    async def _pump_in(self) -> None:
        """Client keystrokes and window changes -> console. Returns when the client closes."""
        stdin = self.process.stdin
        while True:
            try:
                data = await stdin.read(READ_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                set_window(self._master, change.width, change.height)
                # The console's group is a new session without a controlling terminal (its
                # PTY is inherited, not opened), so the kernel has nobody to signal: we do.
                if self.child is not None and self.child.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.child.pid, signal.SIGWINCH)
                continue
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                return
            self.last_input = time.monotonic()
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    await self._writable()
                    continue
                view = view[n:]

    async def _idle_watch(self) -> None:
        if self.idle_timeout <= 0:
            await asyncio.Event().wait()
        while True:
            left = self.last_input + self.idle_timeout - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)
