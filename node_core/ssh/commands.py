"""Script commands over SSH (``ssh -p 2222 node CMD``): what the API serves, for shell scripts.

Every command reads the node the way the API does and every ``fault`` goes through
:func:`node_core.control.apply` with the session's principal, so SSH refuses exactly what the
API and the console refuse, with the same words. Exit status: 0 done, 1 refused or failed
(the message says why), 2 a usage error (a usage line on stderr).

This module writes to an :class:`Output` (bytes plus back-pressure), not to asyncssh, so its
rules are tested without a server.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from node_core.control import (
    ACTIONS,
    LINK_ACTIONS,
    Action,
    ActionInvalid,
    ActionResult,
    Controlled,
    LinkAction,
    Principal,
    apply,
)
from node_core.observe.journal import Journal, JournalEvent

__all__ = ["USAGE", "CommandNode", "Output", "run_command"]

USAGE = """\
usage: ssh NODE COMMAND
commands:
  snapshot                          the node's snapshot (JSON, one line)
  journal [--since SEQ] [--limit N] [--follow]
                                    journal rows after SEQ (JSONL), at most N;
                                    --follow keeps streaming
  peers                             connected peers (a plain table)
  diagnostics                       what is wrong now, one line each (severity, id,
                                    subject, seconds since, what to look at)
  whoami                            your key's name and role
  fault ACTION LABEL [service=S] [seconds=N] [rate=N]
                                    operator keys only; ACTION is one of: {actions}
  fault LINK [NODE_ID ...] [ms=N] [jitter_ms=N] [kib_per_s=N]
                                    operator keys only; a link fault on 64-hex node
                                    ids: {links} (heal with no id: all)
  links                             the link faults in force (JSON, one line)
  help                              this text
""".format(actions=", ".join(ACTIONS), links=", ".join(LINK_ACTIONS))


class CommandNode(Controlled, Protocol):
    """What the commands read of a node (a :class:`~node_core.node.Node`)."""

    @property
    def label(self) -> str: ...
    @property
    def journal(self) -> Journal: ...
    def snapshot(self) -> dict[str, Any]: ...


class Output(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting (the session owns the channel)."""

    def error(self, message: str) -> Any:
        raise _Usage(message)


def _journal_parser() -> _Parser:
    p = _Parser(prog="journal", add_help=False)
    p.add_argument("--since", type=int, default=0)
    p.add_argument("--follow", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    return p


def _line(event: JournalEvent) -> bytes:
    return orjson.dumps(event.to_dict()) + b"\n"


def peers_table(snapshot: dict[str, Any]) -> str:
    """Connected peers as aligned columns: label, direction, address, routine states."""
    rows = [("LABEL", "DIR", "ADDR", "AGE_S", "MISBEHAVIOR", "ROUTINES")]
    for peer in snapshot.get("peers", []):
        routines = ",".join(
            f"{r['service']}={r['state']}" for r in peer.get("routines", []) if r["state"]
        )
        rows.append(
            (
                str(peer["label"]),
                str(peer["direction"]),
                str(peer["addr"]),
                f"{float(peer['age_s']):.0f}",
                str(peer["misbehavior_count"]),
                routines or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] + "\n"
        for r in rows
    )


def diagnostics_lines(snapshot: dict[str, Any]) -> str:
    """The snapshot's ``diagnostics``, one tab-separated line each (severity, id, subject,
    whole seconds since it began, the sentence), or one line saying there are none."""
    rows = snapshot.get("diagnostics") or []
    if not rows:
        return "no diagnostics: everything within thresholds\n"
    now = float(snapshot.get("generated_at") or 0.0)
    return "".join(
        f"{d['severity']}\t{d['id']}\t{d['subject']}\t{max(0.0, now - float(d['since'])):.0f}s"
        f"\t{d['message']}\n"
        for d in rows
    )


def _fault_fields(args: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise _Usage(f"fault argument {arg[:40]!r} must be KEY=VALUE (service, seconds, rate)")
        number: Any = value
        for convert in (int, float):
            try:
                number = convert(value)
                break
            except ValueError:
                continue
        fields[key] = number
    return fields


async def _follow(journal: Journal, since: int, out: Output) -> None:
    """Rows after ``since``, then every new row as it is emitted, until cancelled."""
    queue: asyncio.Queue[JournalEvent] = asyncio.Queue()
    unsubscribe: Callable[[], None] = journal.subscribe(queue.put_nowait)
    try:
        last = since
        for event in journal.since(since):
            out.write(_line(event))
            last = event.seq
        await out.drain()
        while True:
            event = await queue.get()
            if event.seq <= last:
                continue
            out.write(_line(event))
            last = event.seq
            if queue.empty():
                await out.drain()
    finally:
        unsubscribe()


async def run_command(
    node: CommandNode, command: str, principal: Principal, out: Output, err: Output
) -> int:
    """Run one script command line; returns its exit status."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        err.write(f"zakura: cannot parse the command ({exc})\n{USAGE}".encode())
        return 2
    if not argv:
        err.write(USAGE.encode())
        return 2
    name, args = argv[0], argv[1:]
    try:
        if name == "snapshot" and not args:
            out.write(orjson.dumps(node.snapshot()) + b"\n")
        elif name == "peers" and not args:
            out.write(peers_table(node.snapshot()).encode())
        elif name == "diagnostics" and not args:
            out.write(diagnostics_lines(node.snapshot()).encode())
        elif name == "whoami" and not args:
            out.write(f"{principal.name} role={principal.role.value} node={node.label}\n".encode())
        elif name in ("help", "--help", "-h") and not args:
            out.write(USAGE.encode())
        elif name == "journal":
            opts = _journal_parser().parse_args(args)
            if opts.since < 0 or (opts.limit is not None and opts.limit < 1):
                raise _Usage("--since must be >= 0 and --limit >= 1")
            if opts.follow:
                await _follow(node.journal, opts.since, out)
            else:
                for event in node.journal.since(opts.since, opts.limit):
                    out.write(_line(event))
        elif name == "links" and not args:
            out.write(orjson.dumps({"links": node.faults.link_rows()}) + b"\n")
        elif name == "fault" and args and args[0] in LINK_ACTIONS:
            return await _link_fault(node, args[0], args[1:], principal, out, err)
        elif name == "fault":
            if len(args) < 2:
                raise _Usage("fault needs ACTION and LABEL")
            return await _fault(
                node, args[0], args[1], _fault_fields(args[2:]), principal, out, err
            )
        else:
            raise _Usage(f"unknown command {command[:60]!r}")
    except _Usage as exc:
        err.write(f"zakura: {exc}\n{USAGE}".encode())
        return 2
    await out.drain()
    return 0


async def _fault(
    node: CommandNode,
    kind: str,
    label: str,
    fields: dict[str, Any],
    principal: Principal,
    out: Output,
    err: Output,
) -> int:
    if kind not in ACTIONS:
        raise _Usage(f"unknown fault {kind[:40]!r}; one of: {', '.join(ACTIONS)}")
    try:
        action = Action.from_fields(kind, label, fields)
    except ActionInvalid as exc:
        err.write(f"zakura: {exc.field}: {exc}\n".encode())
        return 2
    return await _report(await apply(node, action, principal=principal), out, err)


async def _link_fault(
    node: CommandNode, kind: str, args: list[str], principal: Principal, out: Output, err: Output
) -> int:
    """``fault partition|delay|bandwidth|heal NODE_ID... [KEY=VALUE ...]``: the API's body
    spelled as words (ids without ``=``, numbers as ``KEY=VALUE``)."""
    ids = [a for a in args if "=" not in a]
    fields = _fault_fields([a for a in args if "=" in a])
    if ids:
        fields["nodes"] = ids
    try:
        action = LinkAction.from_fields(kind, fields)
    except ActionInvalid as exc:
        err.write(f"zakura: {exc.field}: {exc}\n".encode())
        return 2
    return await _report(await apply(node, action, principal=principal), out, err)


async def _report(result: ActionResult, out: Output, err: Output) -> int:
    if result.ok:
        out.write(f"{result.message}\n".encode())
        await out.drain()
        return 0
    refusal = result.refusal.value if result.refusal is not None else "failed"
    err.write(f"zakura: refused ({refusal}): {result.message}\n".encode())
    return 1
