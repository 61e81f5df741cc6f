"""``--api HOST:PORT``: the control API flag that ``zakura node`` and ``zakura console`` share.

Why one module: both commands serve the same API (:mod:`node_core.api`) of the same kind of
node, so an operator must meet the same flag in both: the same address syntax (a bare port
means loopback), the same token rule (an address that is not loopback is refused while the
node's data dir holds no token), the same one-line errors with exit code 2, and the same line
saying where the node listens (:func:`zakura.node_cmd.format_start_line`: printed on stdout by
``zakura node``, written to the log by ``zakura console``, whose terminal belongs to the app).

The two commands differ in *when* a bad address shows. ``zakura node`` runs nothing else, so
the node's own start can report it; ``zakura console`` starts a full-screen app and a testnet
of child processes long before its node binds the API, so it calls :func:`check_api` first:
a refusal then leaves nothing to tear down. ``zakura node`` calls it too, so a port in use is
reported before a long ``--blocks`` pre-generation rather than after it. :func:`start_usage_error`
still maps a failure at bind time (another program can take the port in between).

Nothing here imports the node or aiohttp at module level: ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from console.usage import UsageError
from zakura.args import api_addr, describe

if TYPE_CHECKING:
    from node_core.node import Node

__all__ = ["add_api", "check_api", "probe_bind", "start_usage_error"]


def add_api(p: argparse.ArgumentParser, token_dir: str) -> None:
    """Add ``--api``; ``token_dir`` says where the node's tokens live (what ``zakura token
    create --data-dir`` must be given), in the command's own terms."""
    p.add_argument(
        "--api",
        type=api_addr,
        default=None,
        metavar="HOST:PORT",
        help="serve the node's control API here; a bare PORT means 127.0.0.1:PORT, port 0 "
        "picks a free one; /healthz and /metrics are open, every /api/v1 route needs a token "
        f"from 'zakura token create --data-dir {token_dir}' (a viewer reads, an operator also "
        "acts); an address that is not loopback is refused while there is no token "
        "(default: off)",
    )


def probe_bind(host: str, port: int) -> None:
    """Bind every address ``host:port`` resolves to the way the API server will, then let go.

    Why: it finds a port in use, an address that is not this machine's or a name that does
    not resolve before anything has started. It mirrors :meth:`asyncio.loop.create_server`
    (which aiohttp's site uses): every passive address of the name, ``SO_REUSEADDR`` as on
    POSIX, IPv6 sockets IPv6-only. A listener that takes the port after the probe is still
    possible; the node's own bind reports that (:func:`start_usage_error`).

    Raises:
        OSError: What the bind said (:func:`zakura.args.describe` puts it in words).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _name, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)


def check_api(api: tuple[str, int], data_dir: Path | None, token_dir: str = "DIR") -> None:
    """Before anything starts: the token rule for the node in ``data_dir``, then a trial bind.

    Args:
        api: The ``--api`` address.
        data_dir: The node's data dir; None when the node will get a fresh one (a console
            without ``--data-dir``), which holds no token yet.
        token_dir: Where the operator makes tokens, in the command's terms (for that case).

    Raises:
        console.usage.UsageError: Naming ``--api``: no token for an exposed address (with the
            command that makes one), an unreadable token file, or an address that cannot be
            bound (in use, not this machine's, unknown name).
    """
    from node_core.api.server import ApiStartError, check_exposure, is_loopback
    from node_core.api.tokens import TokenStore

    host, port = api
    if data_dir is None:
        if not is_loopback(host):
            raise UsageError(
                "--api",
                f"{host}:{port} is not a loopback address and without --data-dir the node "
                "starts with no API tokens: give --data-dir DIR and create one first with "
                f"'zakura token create --data-dir {token_dir} --name NAME --role viewer|operator'",
            )
    else:
        try:
            check_exposure(host, port, TokenStore(data_dir))
        except ApiStartError as exc:
            raise UsageError("--api", str(exc)) from None
    try:
        probe_bind(host, port)
    except OSError as exc:
        raise UsageError("--api", f"{host}:{port}: {describe(exc)}") from None


def start_usage_error(
    exc: BaseException,
    node: Node,
    *,
    api: tuple[str, int] | None,
    listen: tuple[str, int] | None = None,
) -> UsageError | None:
    """The usage error a failed :meth:`Node.start` means, or None if it names no flag.

    ``Node.start`` binds the peer listener before the API, so an :class:`OSError` while the
    listener is still unbound was ``--listen``'s (``listen``: the operator's value; None when
    the command picks the address itself, as the console does) and one after it the API's.
    """
    from node_core.api import ApiStartError

    if isinstance(exc, ApiStartError):
        return UsageError("--api", str(exc))
    if not isinstance(exc, OSError):
        return None
    flag, address = ("--listen", listen) if node.transport.listen_port == 0 else ("--api", api)
    if address is None:
        if flag == "--api" and node.config.ssh is not None:
            # No --api: the node opened one on loopback for its SSH consoles to attach to.
            return UsageError("--ssh", f"the loopback API its consoles use: {describe(exc)}")
        return None
    host, port = address
    return UsageError(flag, f"{host}:{port}: {describe(exc)}")
