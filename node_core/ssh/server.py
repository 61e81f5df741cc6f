"""The node's SSH server: public keys only, a role per key, a console or a command per session.

asyncssh runs in the node's own loop; all it does per session is authenticate, then either
run a script command (:mod:`node_core.ssh.commands`) or copy bytes to and from a console child
(:mod:`node_core.ssh.session`). The child reaches the node through its API on loopback with a
session token of the key's role (:meth:`TokenStore.add_session`), dropped when the session
ends, so a session can do exactly what its key allows and nothing survives it.

Audit: the journal table ``ssh`` gets ``started`` (address, host key fingerprint), ``login``
(user, key fingerprint, role, address, kind), ``logout`` (why, seconds), and ``refused``
(why, address, user). Every action a session takes carries ``by=ssh:USER:FINGERPRINT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from node_core.api.tokens import TokenStore
from node_core.control import Principal
from node_core.observe.journal import Journal
from node_core.ssh.authkeys import ENTRY_OPTION, AuthorizedKeys, KeyEntry, KeyFile
from node_core.ssh.commands import CommandNode, run_command
from node_core.ssh.config import SshConfig
from node_core.ssh.hostkey import HostKey, load_or_create
from node_core.ssh.limits import FailedLogins
from node_core.ssh.session import PtySession

__all__ = ["SshServer", "SshStartError"]

log = logging.getLogger(__name__)
# asyncssh logs every channel open and close at INFO: the journal's ssh rows say what matters.
logging.getLogger("asyncssh").setLevel(logging.WARNING)


class SshStartError(Exception):
    """The SSH server cannot start as configured: ``flag`` to change, ``problem`` in words."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"{flag}: {problem}")
        self.flag = flag
        self.problem = problem


class SshApi(Protocol):
    """The API a console child attaches to (an :class:`~node_core.api.ApiServer`)."""

    @property
    def tokens(self) -> TokenStore: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class SshNode(CommandNode, Protocol):
    @property
    def journal(self) -> Journal: ...


@dataclass(frozen=True, slots=True)
class Login:
    """Who a connection authenticated as."""

    user: str
    entry: KeyEntry
    address: str

    @property
    def principal(self) -> Principal:
        return Principal(f"ssh:{self.user}:{self.entry.fingerprint}", self.entry.role, self.address)

    def fields(self) -> dict[str, str | None]:
        return {
            "user": self.user,
            "key": self.entry.fingerprint,
            "role": self.entry.role.value,
            "remote": self.address,
        }


def _loopback_url(api: SshApi) -> str:
    host = api.host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1" if ":" not in host else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{api.port}"


class _Door(asyncssh.SSHServer):
    """One connection's authentication (asyncssh makes one per connection)."""

    def __init__(self, server: SshServer) -> None:
        self.server = server
        self.conn: asyncssh.SSHServerConnection | None = None
        self.address = "?"
        self.keys: KeyFile | None = None
        self.user = ""
        self.authenticated = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.authenticated:
            self.server.failures.failed(self.address, time.monotonic())
            if self.keys is not None:  # it tried to log in (not a port scan)
                self.server.refused("no authorized key", self.address, self.user)

    def begin_auth(self, username: str) -> bool:
        assert self.conn is not None
        self.user = username[:64]
        if self.server.failures.blocked(self.address, time.monotonic()):
            self.server.refused("too many failed logins", self.address, self.user)
            return True  # no key is set: every method fails with "Permission denied"
        self.keys = self.server.keys.refresh()
        if self.keys.matcher is not None:
            self.conn.set_authorized_keys(self.keys.matcher)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def auth_completed(self) -> None:
        assert self.conn is not None and self.keys is not None
        entry = self.keys.entry(self.conn.get_key_option(ENTRY_OPTION))
        if entry is None:  # cannot happen with keys only; never let an unknown in
            self.conn.close()
            return
        self.authenticated = True
        self.server.failures.succeeded(self.address)
        self.conn.set_extra_info(zakura_login=Login(self.user, entry, self.address))


class SshServer:
    """Serves one node over SSH (see the module docstring)."""

    def __init__(self, node: SshNode, api: SshApi, config: SshConfig, data_dir: Path) -> None:
        self.node = node
        self.api = api
        self.config = config
        self.data_dir = Path(data_dir)
        self.keys = AuthorizedKeys(config.authorized_keys)
        self.failures = FailedLogins(config.max_failures, config.fail_window)
        self.host_key: HostKey | None = None
        self.sessions: dict[int, PtySession] = {}  # id(session) -> session
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.host = ""
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def journal(self) -> Journal:
        return self.node.journal

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        from node_core.ssh.hostkey import HostKeyError

        try:
            self.host_key = load_or_create(self.data_dir)
        except HostKeyError as exc:
            raise SshStartError("--data-dir", str(exc)) from None
        try:
            keys = self.keys.load()
        except OSError as exc:
            raise SshStartError(
                "--ssh-authorized-keys", f"{self.config.authorized_keys}: {exc.strerror or exc}"
            ) from None
        if not keys.entries:
            raise SshStartError(
                "--ssh-authorized-keys",
                f"{self.config.authorized_keys} has no usable key "
                f"({'; '.join(keys.problems) or 'the file is empty'}): add a line such as "
                "'zakura-role=operator ssh-ed25519 AAAA... you@host'",
            )
        try:
            self._acceptor = await asyncssh.listen(
                self.config.host,
                self.config.port,
                server_factory=lambda: _Door(self),
                server_host_keys=[self.host_key.key],
                process_factory=self._process,
                encoding=None,
                line_editor=False,
                login_timeout=30,
                keepalive_interval=30,
                keepalive_count_max=3,
                # Keys only: never offer anything an attacker could guess.
                password_auth=False,
                kbdint_auth=False,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
            )
        except OSError as exc:
            raise SshStartError(
                "--ssh", f"{self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        sock = self._acceptor.sockets[0].getsockname()
        self.host, self.port = self.config.host, int(sock[1])
        self.journal.emit(
            "ssh",
            "started",
            listen=self.address,
            host_key=self.host_key.fingerprint,
            keys=len(keys.entries),
        )
        log.info(
            "ssh listening on %s; host key %s (%s)",
            self.address,
            self.host_key.fingerprint,
            "created" if self.host_key.created else "loaded",
        )

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ audit
    def refused(self, reason: str, address: str, user: str | None = None) -> None:
        self.journal.emit("ssh", "refused", reason=reason, remote=address, user=user)
        log.warning("ssh refused %s@%s: %s", user or "?", address, reason)

    # ------------------------------------------------------------------ sessions
    def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.create_task(self._serve(process), name="ssh-session")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        login: Login | None = process.get_extra_info("zakura_login")
        if login is None:
            process.exit(1)
            return
        started = time.monotonic()
        kind = "command" if process.command is not None else "console"
        self.journal.emit("ssh", "login", kind=kind, **login.fields())
        reason, status = "error", 1
        try:
            if process.command is not None:
                status = await self._command(process, login)
                reason = "command done"
            elif process.get_terminal_type() is None:
                process.stderr.write(
                    b"zakura: no terminal: use ssh -t for the console, or give a command "
                    b"(ssh HOST help)\n"
                )
                reason, status = "no terminal", 2
            else:
                reason, status = await self._console(process, login)
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            reason = "connection lost"
        except asyncio.CancelledError:
            reason = "node stopping"
            raise
        finally:
            self.journal.emit(
                "ssh",
                "logout",
                reason=reason,
                seconds=round(time.monotonic() - started, 3),
                **login.fields(),
            )
            with contextlib.suppress(Exception):
                process.exit(status)

    async def _command(self, process: asyncssh.SSHServerProcess[bytes], login: Login) -> int:
        assert process.command is not None
        command = asyncio.create_task(
            run_command(self.node, process.command, login.principal, process.stdout, process.stderr)
        )
        closed = asyncio.create_task(process.wait_closed())
        try:
            done, _ = await asyncio.wait({command, closed}, return_when=asyncio.FIRST_COMPLETED)
            if command in done:
                return command.result()
            return 1  # the client went away (e.g. ^C on journal --follow)
        finally:
            for task in (command, closed):
                task.cancel()
            await asyncio.gather(command, closed, return_exceptions=True)

    async def _console(
        self, process: asyncssh.SSHServerProcess[bytes], login: Login
    ) -> tuple[str, int]:
        if len(self.sessions) >= self.config.max_sessions:
            process.stdout.write(
                f"zakura: {len(self.sessions)} console sessions are open, the most this node "
                "allows\r\n(--ssh-max-sessions): try again later\r\n".encode()
            )
            self.refused("session limit", login.address, login.user)
            return "session limit", 1
        token = self.api.tokens.add_session(login.principal.name, login.entry.role)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8",
            "TERM": process.get_terminal_type() or "xterm-256color",
            "ZAKURA_TOKEN": token,
            "TEXTUAL_FPS": "30",
        }
        if process.env.get("COLORTERM") in ("truecolor", "24bit"):
            env["COLORTERM"] = str(process.env["COLORTERM"])
        argv = [*self.config.console_argv, _loopback_url(self.api)]
        session = PtySession(process, argv, env, idle_timeout=self.config.idle_timeout)
        self.sessions[id(session)] = session
        try:
            end = await session.run()
        finally:
            self.sessions.pop(id(session), None)
            self.api.tokens.drop_session(token)
        if end.reason == "idle":
            with contextlib.suppress(Exception):
                process.stdout.write(
                    f"\r\nzakura: no input for {self.config.idle_timeout:g} s: session closed "
                    "(--ssh-idle-timeout)\r\n".encode()
                )
        return end.reason, end.exit_status or 0
