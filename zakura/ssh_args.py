"""The ``--ssh`` flags, shared by ``zakura node`` and ``zakura console``.

The SSH server itself lives in :mod:`node_core.ssh`; this module turns flags into its
:class:`~node_core.ssh.SshConfig` and supplies the one thing the node cannot know: the command
line of the console each interactive session runs (``zakura attach``, in this interpreter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from console.usage import UsageError
from zakura.args import count, describe, parse_hostport, seconds, seconds_or_off

if TYPE_CHECKING:
    from node_core.ssh import SshConfig

#: Seconds between two refreshes of an SSH session's console (``--ssh-refresh``). A local
#: console refreshes 4 times a second; each SSH session is a console of its own polling the
#: node's API, so eight at 4 Hz were 32 snapshot requests a second on the node's loop
#: (bench/ssh_sessions.py measures what they cost). An operator can ask for more.
SSH_REFRESH = 1.0

SSH_HELP = """\
remote operation over SSH (--ssh): operators log in with a key listed in
--ssh-authorized-keys (OpenSSH's authorized_keys format; passwords are never offered). A key
is a viewer unless its line starts with the option zakura-role=operator; OpenSSH's from=
restrictions hold; the file is re-read when it changes. `ssh -p PORT HOST` opens the console
(its own process, READ-ONLY for a viewer); `ssh -p PORT HOST COMMAND` runs snapshot, journal
[--since SEQ] [--follow], peers, whoami, or (operator) fault ACTION LABEL [KEY=VALUE ...].
The host key is made on first start in the data dir (ssh_host_ed25519_key) and kept."""


def ssh_addr(text: str) -> tuple[str, int]:
    """``--ssh``: a bare port means loopback."""
    return parse_hostport(text, default_host="127.0.0.1")


def add_ssh_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ssh",
        type=ssh_addr,
        default=None,
        metavar="HOST:PORT",
        help="serve the console and script commands over SSH here; a bare PORT means "
        "127.0.0.1:PORT; needs --ssh-authorized-keys (default: off)",
    )
    p.add_argument(
        "--ssh-authorized-keys",
        type=Path,
        default=None,
        metavar="FILE",
        help="who may log in over SSH, and as what (see 'remote operation' below); "
        "required with --ssh (default: none)",
    )
    p.add_argument(
        "--ssh-max-sessions",
        type=count(1),
        default=8,
        metavar="N",
        help="console sessions open at once; the next is told so and closed (default: 8)",
    )
    p.add_argument(
        "--ssh-refresh",
        type=seconds,
        default=SSH_REFRESH,
        metavar="SECONDS",
        help="how often each SSH console fetches fresh data from the node; every session "
        "costs the node one snapshot per refresh, so remote consoles default to a slower "
        f"rate than a local one (default: {SSH_REFRESH:g})",
    )
    p.add_argument(
        "--ssh-idle-timeout",
        type=seconds_or_off,
        default=1800.0,
        metavar="S",
        help="end a console session with no keystroke for S seconds; 0 = never (default: 1800)",
    )


def ssh_config_from_args(args: argparse.Namespace, *, probe: bool = False) -> SshConfig | None:
    """The node's SSH config, or None without ``--ssh``. Raises :class:`UsageError`.

    ``probe``: also try to bind the address now (see :func:`zakura.api_flag.probe_bind`), for
    ``zakura console``, whose node binds it only after the app and a testnet have started.
    Flags missing from ``args`` (a namespace built by hand) count as not given.
    """
    address: tuple[str, int] | None = getattr(args, "ssh", None)
    keys_flag: Path | None = getattr(args, "ssh_authorized_keys", None)
    if address is None:
        if keys_flag is not None:
            raise UsageError("--ssh-authorized-keys", "needs --ssh HOST:PORT to serve on")
        return None
    if keys_flag is None:
        raise UsageError(
            "--ssh",
            "needs --ssh-authorized-keys FILE (who may log in; see --help, remote operation)",
        )
    keys = Path(keys_flag)
    if not keys.is_file():
        raise UsageError("--ssh-authorized-keys", f"{keys}: no such file")
    from node_core.ssh import SshConfig

    host, port = address
    if probe:
        from zakura.api_flag import probe_bind

        try:
            probe_bind(host, port)
        except OSError as exc:
            raise UsageError("--ssh", f"{host}:{port}: {describe(exc)}") from None
    return SshConfig(
        host=host,
        port=port,
        authorized_keys=keys,
        console_argv=(
            sys.executable,
            "-m",
            "zakura",
            "attach",
            "--refresh",
            f"{getattr(args, 'ssh_refresh', SSH_REFRESH):g}",
        ),
        max_sessions=getattr(args, "ssh_max_sessions", 8),
        idle_timeout=getattr(args, "ssh_idle_timeout", 1800.0) or 0.0,
    )
