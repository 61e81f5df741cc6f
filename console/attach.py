"""``zakura attach URL``: the console on a node that runs somewhere else, over its control API.

Same app, same views, same keys as ``zakura console``; only the client differs
(:class:`~console.remote.RemoteNodeClient`). The token comes from ``--token-file`` or the
``ZAKURA_TOKEN`` environment variable, never from the command line (where ``ps`` would show
it). A viewer token opens the console read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import stat
import sys
import tempfile
from pathlib import Path

from console.record_flag import add_record, open_record, report, start_recorder
from console.remote import NodeUnreachable, RemoteNodeClient, TokenRefused

__all__ = ["AttachError", "add_parser", "read_token", "run_attach"]

log = logging.getLogger(__name__)

#: How long the first contact may take before attach gives up (later outages are retried).
CONNECT_SECS = 10.0
#: Seconds between view refreshes (the console's default; Textual is not imported for --help).
DEFAULT_REFRESH = 0.25

HELP = """\
Open the operator console on a node that runs elsewhere, through its control API
(`zakura node --api HOST:PORT`). Every view and key works as in `zakura console`; actions
need an operator token, a viewer token opens the console READ-ONLY. When the node goes away
the status bar says so and counts down to the next try; when it comes back (also after a
restart) the console resumes by itself, journal included. It polls the brief snapshot
(GET /api/v1/snapshot?peers=brief: each peer cut to its Peers row, the open peer detail's
peer in full); a node built before it sends the full document, which works as well.

The token is read from --token-file (the file zakura token create's last line went to; it
should be mode 0600) or from the environment variable ZAKURA_TOKEN.

examples:
  zakura token create --data-dir node-a --name me --role operator | tail -n 1 > me.token
  chmod 600 me.token
  zakura attach http://10.0.0.5:9100 --token-file me.token
  ZAKURA_TOKEN=$(cat viewer.token) zakura attach http://127.0.0.1:9100
  zakura attach --fleet /tmp/zakura-testnet-xyz/fleet.toml     # view 0: every node
  zakura attach http://127.0.0.1:9100 --token-file me.token --serve 8080  # in a browser

With several URLs or --fleet the console opens on the Fleet view (0): one row per node
(reachable, peers, header and verified tip against the best in the fleet, blocks/s, panics,
misbehaviors, loop-lag p99, last error); Enter opens that node's views, 0 or Esc comes
back."""


class AttachError(Exception):
    """Attach cannot start; the message is the one line to print (exit code 2)."""


def add_parser(sub: object, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``attach`` to the ``zakura`` subcommands ``sub``."""
    p = sub.add_parser(  # type: ignore[attr-defined]
        "attach",
        help="the console on a remote node, over its control API",
        description=HELP,
        formatter_class=formatter_class,
    )
    p.add_argument(
        "urls",
        nargs="*",
        metavar="URL",
        help="the node's API, e.g. http://127.0.0.1:9100; several URLs open the Fleet view "
        "(all with the same token)",
    )
    p.add_argument(
        "--fleet",
        type=Path,
        default=None,
        metavar="FILE",
        help="a fleet file (TOML: [[node]] name, url, token_file; zakura testnet writes one as "
        "<data dir>/fleet.toml): the Fleet view over those nodes",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the API token (default: $ZAKURA_TOKEN)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="refuse every action even with an operator token (default: as the token allows)",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=DEFAULT_REFRESH,
        metavar="SECONDS",
        help=f"how often the views fetch fresh data (default: {DEFAULT_REFRESH})",
    )
    p.add_argument("--theme", default=None, metavar="NAME", help="colour theme, as for console")
    p.add_argument("--ascii", action="store_true", help="state glyphs as letters")
    add_record(p, "the node's snapshot every --refresh (one URL only)")
    p.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="where the console logs (default: a file in the temp dir, named at exit)",
    )
    p.add_argument(
        "--serve",
        type=_serve_addr,
        default=None,
        metavar="HOST:PORT",
        help="serve this console to web browsers at http://HOST:PORT instead of drawing it "
        "here (one console per tab, same token and role); a bare PORT means 127.0.0.1:PORT; "
        "an address that is not loopback needs --read-only (default: off)",
    )


def _serve_addr(text: str) -> tuple[str, int]:
    """``--serve``: HOST:PORT or a bare PORT (loopback); port 0 is refused (the page's links
    name the port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or PORT (1-65535), got {text!r}")
    return host, int(port)


def read_token(path: Path | None, environ: dict[str, str] | os._Environ[str]) -> str:
    """The token from ``path`` or ``ZAKURA_TOKEN``; :class:`AttachError` saying what to do."""
    if path is None:
        token = environ.get("ZAKURA_TOKEN", "").strip()
        if not token:
            raise AttachError(
                "no API token: pass --token-file FILE or set ZAKURA_TOKEN "
                "(make one with 'zakura token create' on the node)"
            )
        return token
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise AttachError(f"--token-file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is readable by others (chmod 600 it)", path)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise AttachError(f"--token-file {path} is empty")
    # `zakura token create > FILE` writes explanations first and the token last.
    return lines[-1].strip()


async def connect(client: RemoteNodeClient, timeout: float = CONNECT_SECS) -> None:
    """First contact: the token's role. Retries while unreachable, up to ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await client.connect()
            return
        except TokenRefused as exc:
            raise AttachError(str(exc)) from None
        except NodeUnreachable:
            if loop.time() >= deadline:
                raise AttachError(f"cannot reach {client.url}: {client.description}") from None
            await asyncio.sleep(0.2)  # the client's own backoff decides when it really retries


async def run_attach(args: argparse.Namespace) -> int:
    """``zakura attach``: connect, then run the console until the operator quits."""
    from console.app import ZakuraConsole
    from console.launcher import (
        check_log_file,
        check_terminal,
        check_theme,
        configure_logging,
        default_theme,
    )

    check_theme(args.theme)
    if args.log_file is not None:
        check_log_file(args.log_file)
    if args.fleet is None and not args.urls:
        raise AttachError("give the node's API URL (or several, or --fleet FILE)")
    if args.fleet is not None or len(args.urls) > 1:
        if getattr(args, "record", None) is not None:
            raise AttachError("--record records one node: give one URL (not several, not --fleet)")
        return await _run_fleet(args)
    token = read_token(args.token_file, os.environ)
    check_terminal()
    writer = open_record(args)
    log_file = args.log_file or Path(tempfile.gettempdir()) / f"zakura-attach-{os.getpid()}.log"
    handler = configure_logging(log_file, "info")
    client = RemoteNodeClient(args.urls[0], token, read_only=args.read_only)
    recorder = None
    try:
        await connect(client)
        log.info("attached to %s", client.description)
        if writer is not None:
            recorder = start_recorder(client, writer, args.refresh)
        app = ZakuraConsole(
            client,
            refresh_interval=args.refresh,
            theme=default_theme(args.theme, os.environ),
            ascii=args.ascii,
        )
        await app.run_async()
        return 1 if app.return_code not in (None, 0) else 0
    finally:
        if recorder is not None:
            report("zakura attach", await recorder.stop(), recorder.writer.error)
        elif writer is not None:
            writer.close()
        await client.close()
        logging.getLogger().removeHandler(handler)
        print(f"zakura attach: log in {log_file}", file=sys.stderr)


def fleet_members(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``(name, url, token)`` for every node the flags name; :class:`AttachError` if wrong."""
    from console.fleet import FleetError, load_fleet_file

    out: list[tuple[str, str, str]] = []
    if args.fleet is not None:
        try:
            entries = load_fleet_file(args.fleet)
        except FleetError as exc:
            raise AttachError(str(exc)) from None
        for name, url, token_file in entries:
            out.append((name, url, read_token(token_file, os.environ)))
    if args.urls:
        token = read_token(args.token_file, os.environ)
        for url in args.urls:
            out.append((url.split("//", 1)[-1].rstrip("/"), url, token))
    return out


async def _run_fleet(args: argparse.Namespace) -> int:
    """The Fleet view over every node named by ``--fleet`` and the URLs."""
    from console.fleet import Fleet, FleetMember
    from console.fleet_app import FleetConsole
    from console.launcher import check_terminal, configure_logging, default_theme

    members = [
        FleetMember(name, RemoteNodeClient(url, token, read_only=args.read_only))
        for name, url, token in fleet_members(args)
    ]
    check_terminal()
    log_file = args.log_file or Path(tempfile.gettempdir()) / f"zakura-attach-{os.getpid()}.log"
    handler = configure_logging(log_file, "info")
    fleet = Fleet(members)
    try:
        await fleet.connect_all()
        app = FleetConsole(
            fleet,
            refresh_interval=max(args.refresh, 0.5),
            theme=default_theme(args.theme, os.environ),
            ascii=args.ascii,
        )
        await app.run_async()
        return 1 if app.return_code not in (None, 0) else 0
    finally:
        await fleet.close()
        logging.getLogger().removeHandler(handler)
        print(f"zakura attach: log in {log_file}", file=sys.stderr)
