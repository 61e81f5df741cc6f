"""``zakura attach URL --serve HOST:PORT``: the same console, in a web browser.

textual-serve (the Textual project's own server) runs one ``zakura attach`` child per browser
tab with Textual's web driver, so a browser session is exactly a terminal session: same views,
same keys, same token and role. The page has no login of its own, so whoever reaches it acts
with the token: it binds loopback by default, and an address that is not loopback is refused
unless ``--read-only`` makes every tab a viewer (put a reverse proxy with its own
authentication in front to expose it further).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys

from console.usage import UsageError

__all__ = ["serve"]


def child_argv(args: argparse.Namespace) -> list[str]:
    """The ``zakura attach`` each browser tab runs: these flags, without ``--serve``."""
    argv = [sys.executable, "-m", "zakura", "attach", *args.urls]
    if args.fleet is not None:
        argv += ["--fleet", str(args.fleet.resolve())]
    if args.token_file is not None:
        argv += ["--token-file", str(args.token_file.resolve())]
    if args.read_only:
        argv.append("--read-only")
    argv += ["--refresh", str(args.refresh)]
    if args.theme is not None:
        argv += ["--theme", args.theme]
    if args.ascii:
        argv.append("--ascii")
    return argv


async def _check(args: argparse.Namespace) -> None:
    """Fail now, in the operator's terminal, rather than in every browser tab later."""
    from console.attach import AttachError, connect, fleet_members, read_token
    from console.remote import RemoteNodeClient

    if args.fleet is not None or len(args.urls) > 1:
        fleet_members(args)  # the files and tokens exist
        return
    if not args.urls:
        raise AttachError("give the node's API URL (or several, or --fleet FILE)")
    client = RemoteNodeClient(args.urls[0], read_token(args.token_file, os.environ))
    try:
        await connect(client)
    finally:
        await client.close()


def serve(args: argparse.Namespace) -> int:
    """Serve the console until SIGINT/SIGTERM. Raises :class:`UsageError` or AttachError."""
    from node_core.api.server import is_loopback

    host, port = args.serve
    if not is_loopback(host) and not args.read_only:
        raise UsageError(
            "--serve",
            f"{host} is not a loopback address and the page has no login of its own: add "
            "--read-only, or serve on 127.0.0.1 behind a proxy that authenticates",
        )
    asyncio.run(_check(args))
    from textual_serve.server import Server

    command = shlex.join(child_argv(args))
    # Every tab inherits this environment; a browser draws true colour, so the console keeps
    # its own theme instead of falling back to the terminal-palette one (``ansi``).
    os.environ.setdefault("COLORTERM", "truecolor")
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    print(f"zakura attach: serving the console on {where} (Ctrl+C stops)", flush=True)
    server = Server(command, host=host, port=port, title="zakura console", public_url=where)
    server.serve()
    return 0
