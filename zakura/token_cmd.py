"""``zakura token create|list|revoke``: the control API's bearer tokens of one data dir.

``create`` prints the new token once, alone on the last line of stdout, so a script can take
it with ``| tail -n 1``; the node keeps only its hash (:mod:`node_core.api.tokens`). A running
node picks up a new or revoked token at its next request, without a restart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from node_core.api.tokens import TOKEN_FILE, TokenError, TokenStore
from node_core.control import Role

HELP = f"""\
Manage the control API's bearer tokens of a node's data dir ({TOKEN_FILE}, mode 0600).

Roles: viewer reads every /api/v1 route; operator also acts (disconnect, panic, park,
unpark, stall, throttle). /healthz and /metrics need no token. The token is printed once, alone on
the last line of stdout; only its SHA-256 hash is stored, so a lost token is revoked and
created again, never recovered. A running node sees changes at its next request.

examples:
  zakura token create --data-dir node1 --name ci --role operator | tail -n 1 > ci.token
  curl -H "Authorization: Bearer $(cat ci.token)" 127.0.0.1:9100/api/v1/snapshot
  zakura token list --data-dir node1
  zakura token revoke --data-dir node1 --name ci"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add ``token`` and its three actions to the ``zakura`` subcommands ``sub``."""
    kw: dict[str, Any] = {"formatter_class": formatter_class}
    token = sub.add_parser(
        "token", help="create, list or revoke control API tokens", description=HELP, **kw
    )
    actions = token.add_subparsers(dest="token_command", metavar="{create,list,revoke}")
    actions.required = True
    data_dir: dict[str, Any] = {
        "type": Path,
        "required": True,
        "metavar": "DIR",
        "help": "the node's data dir",
    }
    create = actions.add_parser("create", help="make a token and print it once", **kw)
    create.add_argument("--data-dir", **data_dir)
    create.add_argument("--name", required=True, help="who holds it (shown in the journal)")
    create.add_argument(
        "--role",
        choices=[r.value for r in Role],
        default=Role.VIEWER.value,
        help="viewer reads, operator also acts (default: viewer)",
    )
    listing = actions.add_parser("list", help="names, roles and ages (never the tokens)", **kw)
    listing.add_argument("--data-dir", **data_dir)
    revoke = actions.add_parser("revoke", help="delete a token by name", **kw)
    revoke.add_argument("--data-dir", **data_dir)
    revoke.add_argument("--name", required=True)


def run(args: argparse.Namespace) -> int:
    store = TokenStore(args.data_dir)
    try:
        if args.token_command == "create":
            token = store.create(args.name, Role(args.role))
            print(f"created {args.role} token {args.name!r} in {store.path}")
            print("it is shown only now; the node keeps its hash:")
            print(token, flush=True)
        elif args.token_command == "list":
            tokens = store.tokens
            if not tokens:
                print(f"no tokens in {store.path}")
            now = time.time()
            for t in tokens:
                age = int(now - t.created)
                print(f"{t.name:<24} {t.role.value:<9} created {age} s ago")
        else:
            info = store.revoke(args.name)
            print(f"revoked {info.role.value} token {info.name!r}")
    except TokenError as exc:
        print(f"zakura token {args.token_command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"zakura token {args.token_command}: error: {args.data_dir}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    return 0
