"""Many nodes at once: the fleet a console watches (``zakura attach URL URL ...`` or
``--fleet FILE``), and the one row per node the Fleet view shows.

Each member is a :class:`~console.remote.RemoteNodeClient` of its own, so one node going
away backs off on its own and never slows the others: the fleet reads every member's
snapshot concurrently and keeps, per member, the last document and the last error. Rows are
computed from those with :func:`fleet_rows`, a plain function (tests and the view share it),
comparing each node's tips with the best header tip in the fleet.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.client import ClientUnavailable, NodeClient

__all__ = ["Fleet", "FleetError", "FleetMember", "FleetRow", "fleet_rows", "load_fleet_file"]


class FleetError(Exception):
    """A fleet file or a fleet argument is wrong; the message names it."""


@dataclass
class FleetMember:
    """One node of the fleet: its name, its client, and what was last read from it.

    The client is usually a :class:`~console.remote.RemoteNodeClient`; ``zakura console``
    also lists its own in-process node, whose client has no URL and needs no first contact.
    """

    name: str
    client: NodeClient
    snapshot: dict[str, Any] | None = None
    error: str | None = None
    read_at: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.error is None and self.snapshot is not None


@dataclass(frozen=True, slots=True)
class FleetRow:
    """What the Fleet view shows for one node (None: not known yet)."""

    name: str
    url: str
    reachable: bool
    label: str | None
    peers: int | None
    header_tip: int | None
    verified_tip: int | None
    best_tip: int
    blocks_per_s: float | None
    panics: int | None
    misbehaviors: int | None
    lag_p99_ms: float | None
    error: str


@dataclass
class Fleet:
    """The members, read together."""

    members: list[FleetMember] = field(default_factory=list)

    async def refresh(self) -> None:
        """Read every member's snapshot at once; a failure is kept as that member's error."""
        await asyncio.gather(*(self._read(m) for m in self.members))

    async def _read(self, member: FleetMember) -> None:
        if getattr(member.client, "attached", True) is False:
            member.error = "starting"  # the console's own node is not up yet
            return
        try:
            member.snapshot = await member.client.snapshot()
            member.error = None
            member.read_at = time.monotonic()
        except ClientUnavailable as exc:
            member.error = exc.short
        except Exception as exc:  # one bad member must not stop the others' rows
            member.error = f"{exc.__class__.__name__}: {exc}"[:120]

    async def connect_all(self) -> None:
        """Learn each member's role (first contact); unreachable members stay in the list."""

        async def one(member: FleetMember) -> None:
            connect = getattr(member.client, "connect", None)
            if connect is None:
                return
            try:
                await connect()
            except ClientUnavailable as exc:
                member.error = exc.short

        await asyncio.gather(*(one(m) for m in self.members))

    async def close(self) -> None:
        closers = [getattr(m.client, "close", None) for m in self.members]
        await asyncio.gather(*(close() for close in closers if close is not None))


def fleet_rows(members: Sequence[FleetMember]) -> list[FleetRow]:
    """One row per member, tips against the best header tip any reachable member has."""
    best = 0
    for m in members:
        if m.snapshot is not None:
            best = max(best, int(m.snapshot["chain"]["header_tip"]["height"]))
    rows = []
    for m in members:
        snap = m.snapshot
        if snap is None:
            rows.append(
                FleetRow(
                    name=m.name,
                    url=str(getattr(m.client, "url", "in this process")),
                    reachable=False,
                    label=None,
                    peers=None,
                    header_tip=None,
                    verified_tip=None,
                    best_tip=best,
                    blocks_per_s=None,
                    panics=None,
                    misbehaviors=None,
                    lag_p99_ms=None,
                    error=m.error or "not read yet",
                )
            )
            continue
        chain = snap["chain"]
        tally = snap.get("misbehavior_tally") or []
        rows.append(
            FleetRow(
                name=m.name,
                url=str(getattr(m.client, "url", "in this process")),
                reachable=m.error is None,
                label=str(snap["node"]["label"]),
                peers=int(snap["dialer"]["connected"]),
                header_tip=int(chain["header_tip"]["height"]),
                verified_tip=int(chain["verified_tip"]["height"]),
                best_tip=best,
                blocks_per_s=float(snap["block_sync"].get("blocks_per_s") or 0.0),
                panics=int(snap["counters"].get("panics") or 0),
                misbehaviors=sum(int(t.get("count") or 0) for t in tally),
                lag_p99_ms=float(snap["loop_lag"].get("p99_ms") or 0.0),
                error=m.error or "",
            )
        )
    return rows


def load_fleet_file(path: Path) -> list[tuple[str, str, Path]]:
    """``(name, url, token_file)`` of each ``[[node]]`` in a fleet file (``zakura testnet``
    writes one: ``<data dir>/fleet.toml``). Relative token paths are relative to the file."""
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise FleetError(f"--fleet {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"--fleet {path}: not TOML ({exc})") from None
    nodes = doc.get("node")
    if not isinstance(nodes, list) or not nodes:
        raise FleetError(f"--fleet {path}: no [[node]] entries (name, url, token_file)")
    out = []
    for i, entry in enumerate(nodes):
        if not isinstance(entry, dict):
            raise FleetError(f"--fleet {path}: node {i + 1} is not a table")
        missing = [k for k in ("name", "url", "token_file") if not isinstance(entry.get(k), str)]
        if missing:
            raise FleetError(f"--fleet {path}: node {i + 1} lacks {', '.join(missing)}")
        token_file = Path(entry["token_file"])
        if not token_file.is_absolute():
            token_file = path.parent / token_file
        out.append((entry["name"], entry["url"], token_file))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        raise FleetError(f"--fleet {path}: node names repeat")
    return out
