"""The Peers view's row model: snapshot documents in, one :class:`PeerRow` per peer out.

No Textual here: this is the part of a refresh that is plain Python over the snapshot, kept
apart from the widget so it can be read (and measured) on its own.

Why it is shaped this way:

* A refresh at 4 Hz with 1,000 peers must cost little when little changed. Each live peer's
  raw fields are gathered into a key; when the key equals last frame's, last frame's
  :class:`PeerRow` (and the cells it already rendered) is reused as is, and the table skips
  it without comparing a single cell.
* Rates are bytes per second between two snapshots, on the snapshots' own clock
  (``generated_at``), per connection, so a paused or replayed view never invents a rate and a
  reconnecting peer never shows a negative one.
* Peers that just left stay :data:`KEEP_CLOSED_S` seconds of snapshot time, dimmed, with their
  close reason; a peer that is already back shows why its last connection ended (``↻``).
* Every string that came from a peer goes through :func:`console.format.clean`.
* Header-sync columns (command queue, range in flight, advertised tip) exist only once some
  peer runs a ``header_sync`` routine, so an older node's snapshot keeps the old table.
  Block-sync columns (outstanding heights, window, delivery rate, fill stop) likewise need a
  ``block_sync`` routine; they take the header-sync columns' room (those numbers stay in the
  peer detail): while blocks download, header sync is at the tip and its columns are still.
* Columns are ordered by importance, so an 80-column terminal still shows what matters and
  the rest scrolls into view: the label (without its constant ``peer:`` prefix), one state
  glyph per service, the operator faults in force (``fault``: ``S`` a routine stalled, ``W``
  reads throttled), the sync numbers, misbehavior and rates; then age, connection id,
  address and close reason. At 120 columns all but the close reason's tail fit. Byte totals
  and the direction live in the peer detail (the summary line counts in and out, and the
  ``/`` filter still matches ``in``/``out``): the rates stay here, they show what is moving.
* Rates carry their unit (``16K/s``). In and out are averaged over the last
  :data:`RATE_WINDOW_S` seconds of snapshot time: per-frame deltas made an idle peer's rate
  jump from ``0`` to a keepalive's worth and back four times a second. The block-sync
  delivery rate of an idle peer is smoothed likewise (see :meth:`RowBuilder._smoothed`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from console.client import Snapshot
from console.format import (
    STATE_STYLES,
    UNICODE_GLYPHS,
    Glyphs,
    clean,
    duration,
    rate_text,
    short_peer,
)
from console.widgets.block_sync_cells import (
    SORT_INDEX,
    BlockSyncCells,
    block_sync_cells,
    block_sync_row_cells,
)
from console.widgets.cells import (
    Cell,
    ColumnSpec,
    rate_cell,
)
from console.widgets.header_sync_cells import (
    HeaderSyncCells,
    header_sync_cells,
    header_sync_row_cells,
)

#: How long a closed peer stays in the table, in seconds of snapshot time.
KEEP_CLOSED_S = 5.0

#: Seconds of snapshot time a byte rate is averaged over (see the module docstring).
RATE_WINDOW_S = 4.0

#: Services in the order their columns appear; services not listed follow, sorted by name.
SERVICE_ORDER = ("discovery", "header_sync", "block_sync")

#: Sort order of routine states: healthy first, so a reversed sort puts panics on top.
STATE_RANK = {"running": 0, "parked": 1, "exited": 2, "panicked": 3}

#: Sort values: ``(0, value)`` when present, ``(1, "")`` when missing, so missing sorts last.
SortValue = tuple[int, Any]
MISSING: SortValue = (1, "")


LEADING = (ColumnSpec("label", "label", 16),)
#: Operator faults in force on the peer, after the state glyphs (see :func:`fault_cell`).
FAULT_COLUMN = ColumnSpec("fault", "fault", 5)
#: The header-sync routine's own columns, after the service glyphs (its state and generation
#: are the ``hs`` glyph column).
HEADER_SYNC_COLUMNS = (
    ColumnSpec("hs_queue", "queue", 7, right=True),
    ColumnSpec("hs_flight", "flight", 9, right=True),
    ColumnSpec("hs_tip", "tip", 7, right=True),
)
#: The block-sync routine's columns (its state and generation are the ``bs`` glyph column).
BLOCK_SYNC_COLUMNS = (
    ColumnSpec("bs_out", "out", 4, right=True),
    ColumnSpec("bs_cwnd", "cwnd", 5, right=True),
    ColumnSpec("bs_rate", "rate", 6, right=True),
    ColumnSpec("bs_stop", "stop", 6),
)
TRAILING = (
    ColumnSpec("misb", "misb", 5, right=True),
    ColumnSpec("in_rate", "in/s", 6, right=True),
    ColumnSpec("out_rate", "out/s", 6, right=True),
    ColumnSpec("age", "age", 5, right=True),
    ColumnSpec("conn", "conn", 5, right=True),
    ColumnSpec("addr", "address", 15),
    ColumnSpec("close", "close reason", 24),
)

#: Short column titles of known services (the width budget has no room for ``header_sync``).
SERVICE_TITLES = {"discovery": "disc", "header_sync": "hs", "block_sync": "bs"}


def service_column(service: str) -> ColumnSpec:
    """The column of one service; room for the header plus a sort arrow, and for a glyph
    with a three-digit generation."""
    title = SERVICE_TITLES.get(service, service)
    return ColumnSpec(f"svc:{service}", title, max(len(title) + 1, 4))


def columns_for(services: tuple[str, ...]) -> tuple[ColumnSpec, ...]:
    """All columns, most important first: the label, one glyph column per service, the
    faults in force, the block-sync columns when that service exists (else the header-sync
    ones when it does), then misbehavior, rates, and the connection's own fields.

    Both sync sets do not fit 120 columns; block sync is the one that moves while it runs."""
    sync: tuple[ColumnSpec, ...]
    if "block_sync" in services:
        sync = BLOCK_SYNC_COLUMNS
    elif "header_sync" in services:
        sync = HEADER_SYNC_COLUMNS
    else:
        sync = ()
    return (*LEADING, *(service_column(s) for s in services), FAULT_COLUMN, *sync, *TRAILING)


def age_text(seconds: float) -> str:
    """Connection age as k9s shows it: seconds while young, coarser once settled.

    ``45s``, ``5m07s`` under ten minutes, then ``12m``, ``3h05m``, ``2d03h``. A young
    connection is the interesting one (a flapping peer), and an old one whose cell ticked
    every second would cost a write per peer per second for nothing an operator reads.
    """
    if seconds < 600:
        return duration(seconds)
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    return duration(seconds)


def _age_bucket(seconds: float) -> int:
    """Changes exactly when :func:`age_text` can change (the row-reuse key uses it)."""
    return int(seconds) if seconds < 600 else 600 + int(seconds // 60)


def order_services(services: set[str]) -> tuple[str, ...]:
    """Known services in protocol order, then any others by name."""
    known = [s for s in SERVICE_ORDER if s in services]
    return (*known, *sorted(services - set(known)))


def _text(value: object, limit: int) -> str:
    """:func:`clean`, with a fast path for the common case of short printable ASCII."""
    if type(value) is str and len(value) <= limit and value.isascii() and value.isprintable():
        return value
    return clean(value, limit)


def _direction(value: object) -> str:
    text = _text(value, 12)
    return {"inbound": "in", "outbound": "out"}.get(text, text[:4])


def _rate_cell(rate: float | None, dim: str) -> Cell:
    return ("", dim) if rate is None else rate_cell(rate, dim)


#: The letters of the ``fault`` column: the keys that put each fault in force.
STALL_FLAG = "S"
THROTTLE_FLAG = "W"


def stalled_services(routines: Any) -> tuple[str, ...]:
    """The services of this peer under an operator stall (``s``) right now."""
    found: list[str] = []
    for r in routines or ():
        service = r.get("service")
        doc = r.get(service) if isinstance(service, str) else None
        if isinstance(doc, dict) and doc.get("stalled_for_s") is not None:
            found.append(_text(service, 40))
    return tuple(found)


def fault_cell(stalled: tuple[str, ...], throttled: bool, dim: str) -> Cell:
    """``S`` while a routine is stalled, ``W`` while reads are throttled, both as ``SW``:
    faults the operator put in force, which otherwise show only in the peer detail."""
    text = (STALL_FLAG if stalled else "") + (THROTTLE_FLAG if throttled else "")
    return (text, "bold yellow" if text and not dim else dim)


@dataclass(slots=True)
class PeerRow:
    """One row's data, normalised from a live peer or a recently closed connection."""

    label: str
    live: bool
    addr: str
    direction: str
    age: float
    conn_id: int
    bytes_in: int
    bytes_out: int
    rate_in: float | None
    rate_out: float | None
    misbehavior: int | None
    close: str
    routines: dict[str, tuple[str, int]] = field(default_factory=dict)
    header_sync: HeaderSyncCells | None = None
    block_sync: BlockSyncCells | None = None
    #: Services under an operator stall, and whether reads from the peer are throttled.
    stalled: tuple[str, ...] = ()
    throttled: bool = False
    glyphs: Glyphs = UNICODE_GLYPHS
    # Memos: a reused row renders, sorts and filters without recomputing anything.
    _cells: tuple[tuple[str, ...], tuple[Cell, ...]] | None = field(default=None, repr=False)
    _sort: tuple[str, SortValue] | None = field(default=None, repr=False)
    _hay: str | None = field(default=None, repr=False)

    def cells(self, services: tuple[str, ...]) -> tuple[Cell, ...]:
        """The rendered cells, in column order (what the table diffs)."""
        if self._cells is not None and self._cells[0] is services:
            return self._cells[1]
        dim = "" if self.live else "dim"
        out: list[Cell] = [(short_peer(self.label), dim)]
        glyphs = self.glyphs
        for service in services:
            routine = self.routines.get(service)
            if routine is None:
                out.append(("-" if self.live else "", "dim"))
            else:
                state, generation = routine
                style = STATE_STYLES.get(state, "") if self.live else "red"
                out.append((f"{glyphs.state(state)}{generation or ''}", style or dim))
        out.append(fault_cell(self.stalled, self.throttled, dim))
        if "block_sync" in services:
            out += block_sync_row_cells(self.block_sync, self.live, dim)
        elif "header_sync" in services:
            out += header_sync_row_cells(self.header_sync, self.live, dim)
        if self.misbehavior is None:
            out.append(("", dim))
        else:
            out.append((str(self.misbehavior), "bold red" if self.misbehavior else "dim"))
        out.append(_rate_cell(self.rate_in, dim))
        out.append(_rate_cell(self.rate_out, dim))
        out.append((age_text(self.age), dim))
        out.append((str(self.conn_id), dim))
        out.append((self.addr, dim))
        out.append((self.close, "yellow" if self.live else "italic dim"))
        cells = tuple(out)
        self._cells = (services, cells)
        return cells

    def moved(
        self,
        age: float,
        rate: tuple[float, float] | None,
        drawn: tuple[tuple[str, bool], tuple[str, bool]] | None,
        new_age: bool,
        byte_counts: tuple[Any, ...],
    ) -> PeerRow:
        """This live row with a new age and rates: the same row otherwise, its rendered cells
        patched in their three columns (the last but the connection's own three) from the
        rates as drawn (``drawn``: each one's text and whether it is idle, see
        :func:`_rate_key`) and, when ``new_age``, the age's new text. ``byte_counts``: the
        peer's bytes in and out as the document has them (drawn only as rates)."""
        rate_in, rate_out = (None, None) if rate is None else rate
        b_in, b_out = byte_counts
        row = PeerRow(
            self.label, True, self.addr, self.direction, age, self.conn_id, int(b_in or 0),
            int(b_out or 0), rate_in, rate_out, self.misbehavior, self.close, self.routines,
            self.header_sync, self.block_sync, self.stalled, self.throttled, self.glyphs,
            _hay=self._hay,
        )  # fmt: skip
        if self._cells is not None:
            services, cells = self._cells
            if drawn is None:
                rates: tuple[Cell, Cell] = (("", ""), ("", ""))
            else:
                (text_in, idle_in), (text_out, idle_out) = drawn
                rates = ((text_in, "dim" if idle_in else ""), (text_out, "dim" if idle_out else ""))
            age_cell = (age_text(age), "") if new_age else cells[-4]
            row._cells = (services, (*cells[:-6], *rates, age_cell, *cells[-3:]))
        return row

    def sort_value(self, column: str) -> SortValue:
        """The value ``column`` sorts this row by (raw numbers, not their display)."""
        if self._sort is not None and self._sort[0] == column:
            return self._sort[1]
        value: Any
        if column.startswith("svc:"):
            routine = self.routines.get(column[4:])
            value = None if routine is None else (STATE_RANK.get(routine[0], 9), routine[1])
        elif column.startswith("hs_"):
            hs = self.header_sync
            index = {"hs_queue": 0, "hs_flight": 2, "hs_tip": 3}.get(column)
            value = None if hs is None or index is None else hs[index]
        elif column.startswith("bs_"):
            bs, bs_index = self.block_sync, SORT_INDEX.get(column)
            value = None if bs is None or bs_index is None else bs[bs_index]
        elif column == "addr":
            host, _, port = self.addr.rpartition(":")
            value = (host, int(port) if port.isdigit() else 0)
        else:
            attr = {
                "label": "label",
                "age": "age",
                "conn": "conn_id",
                "in": "bytes_in",
                "out": "bytes_out",
                "in_rate": "rate_in",
                "out_rate": "rate_out",
                "misb": "misbehavior",
                "close": "close",
                "fault": "fault_rank",
            }.get(column)
            value = None if attr is None else getattr(self, attr)
        result = MISSING if value is None else (0, value)
        self._sort = (column, result)
        return result

    @property
    def fault_rank(self) -> int:
        """Sorts the ``fault`` column: none, then stalled, throttled, both."""
        return (1 if self.stalled else 0) + (2 if self.throttled else 0)

    def matches(self, needle: str) -> bool:
        """Whether the ``/`` filter keeps this row: label, address, direction, routine states
        (``discovery:running``), and the close reason."""
        if self._hay is None:
            parts = [self.label, self.addr, self.direction]
            parts.append("inbound" if self.direction == "in" else "outbound")
            parts += [f"{svc}:{state}" for svc, (state, _gen) in self.routines.items()]
            if not self.live:
                parts.append("closed")
            if self.close:
                parts.append(self.close)
            if self.stalled:
                parts.append("stalled")
            if self.throttled:
                parts.append("throttled")
            self._hay = " ".join(parts).lower()
        return needle in self._hay


def close_text(close: object) -> str:
    """A close record as one short line: the reason, and who closed if it was the peer."""
    if isinstance(close, dict):
        reason = clean(close.get("reason") or f"code {close.get('code')}", 60)
        return reason if close.get("by") in (None, "local") else f"{reason} (by peer)"
    return clean(close, 60)


#: The fields of a live peer that its row shows (besides age, rates and routines).
_FIELD_NAMES = (
    "label",
    "addr",
    "direction",
    "conn_id",
    "misbehavior_count",
    "close",
    # Last: the row draws them only as rates, so a row whose bytes alone moved is patched
    # (:meth:`PeerRow.moved`), not built again.
    "bytes_in",
    "bytes_out",
)
#: Those, then the age, routines and throttle: what the builder reads of every peer first.
_QUICK_NAMES = (*_FIELD_NAMES, "age_s", "routines", "throttle_bytes_per_s")
_QUICK = itemgetter(*_QUICK_NAMES)
#: What the rates are tracked from.
_BYTES_NAMES = ("label", "conn_id", "bytes_in", "bytes_out")
_BYTES = itemgetter(*_BYTES_NAMES)


def _rate_key(rate: float) -> tuple[str, bool]:
    """A rate as its cell draws it (text, and whether it is dimmed as idle): the row is
    rebuilt when that changes, not whenever the float moves (it does every frame while the
    window slides)."""
    return _IDLE_RATE if rate <= 0 else (rate_text(rate), False)


_IDLE_RATE = (rate_text(0.0), True)


@dataclass(slots=True)
class _Seen:
    """What the builder keeps of one live peer between frames (see :meth:`RowBuilder.build`)."""

    #: The raw fields, age and rates as drawn, and routines as sent: compared first.
    quick: tuple[Any, ...]
    #: What the row was built from, parsed: compared when ``quick`` differs.
    key: tuple[Any, ...]
    #: The block-sync numbers as reported (before the delivery rate's smoothing).
    block_sync: BlockSyncCells | None
    row: PeerRow


class RowBuilder:
    """Turns each snapshot into rows, remembering what it needs from the frames before:
    byte counts for rates, last frame's rows for reuse, and routines of peers that left."""

    def __init__(self, glyphs: Glyphs = UNICODE_GLYPHS) -> None:
        #: The symbols rows are drawn with (``--ascii`` swaps them for letters).
        self.glyphs = glyphs
        self._rate_time: float | None = None
        #: Per (label, conn_id): (snapshot time, bytes in, bytes out) over the rate window.
        self._rate_history: dict[tuple[Any, Any], deque[tuple[float, int, int]]] = {}
        self._rates: dict[tuple[Any, Any], tuple[float, float]] = {}
        #: Per (label, conn_id): the block-sync delivery rate shown, and its snapshot time.
        self._delivery: dict[tuple[Any, Any], tuple[float, float]] = {}
        self._delivery_next: dict[tuple[Any, Any], tuple[float, float]] = {}
        #: Raw label -> (key of the raw fields, row built from them) of the last frame.
        self._live: dict[Any, _Seen] = {}
        #: Routines of each peer as last seen live (a closed row shows which one panicked).
        self._known_routines: dict[str, dict[str, tuple[str, int]]] = {}
        #: Services seen in rows built this frame (reused rows add nothing new).
        self.new_services: set[str] = set()

    def build(self, snapshot: Snapshot, needle: str = "") -> dict[str, PeerRow]:
        """Rows for ``snapshot`` by label, live peers first, narrowed to ``needle``."""
        now = float(snapshot.get("generated_at") or 0.0)
        peers = snapshot.get("peers") or ()
        self._track_rates(peers, now)
        recent = [
            c
            for c in snapshot.get("recently_closed") or ()
            if now - float(c.get("closed_at") or 0.0) <= KEEP_CLOSED_S
        ]
        previous = {c.get("label"): close_text(c) for c in recent}  # newest closure wins
        rates, last, fresh = self._rates, self._live, {}
        self.new_services = set()
        rows: dict[str, PeerRow] = {}
        for p in peers:
            try:
                got = _QUICK(p)  # one C call for the common, complete document
            except KeyError:
                got = tuple(p.get(name) for name in _QUICK_NAMES)
            raw, conn_id, fields = got[0], got[3], got[:8]
            rate = rates.get((raw, conn_id))
            age = float(got[8] or 0.0)
            # What the row shows, before anything is parsed: the raw fields, the age and
            # rates as drawn, and the routines as sent (a brief document's routines carry
            # only what the row draws, so they compare equal while the row is unchanged).
            quick = (
                fields,
                _age_bucket(age),
                None if rate is None else (_rate_key(rate[0]), _rate_key(rate[1])),
                previous.get(raw),
                got[9],
                got[10],
            )
            hit = last.get(raw)
            if (
                hit is not None
                and hit.quick == quick
                and self._smoothed(hit.block_sync, (raw, conn_id), now) is hit.key[6]
            ):
                fresh[raw] = hit
                rows[hit.row.label] = hit.row
                continue
            if (
                hit is not None
                and hit.quick[0][:6] == fields[:6]
                and hit.quick[3:] == quick[3:]
                and self._smoothed(hit.block_sync, (raw, conn_id), now) is hit.key[6]
            ):
                # Only the age, the byte counts or a rate moved (most changed rows of a live
                # frame): patch those three cells of last frame's row instead of building it.
                row = hit.row.moved(age, rate, quick[2], hit.quick[1] != quick[1], got[6:8])
                key = (fields, quick[1], quick[2], *hit.key[3:])
                fresh[raw] = _Seen(quick, key, hit.block_sync, row)
                rows[row.label] = row
                continue
            routines = got[9]
            bs = block_sync_cells(routines)
            key = (
                fields,
                quick[1],
                quick[2],
                quick[3],
                tuple(
                    [
                        (r.get("service"), r.get("state"), r.get("generation"))
                        for r in routines or ()
                    ]
                ),
                header_sync_cells(routines),
                self._smoothed(bs, (raw, conn_id), now),
                stalled_services(routines),
                bool(quick[5]),
            )
            if hit is not None and hit.key == key:
                row = hit.row
            else:
                row = self._live_row(p, key, rate)
                self.new_services.update(row.routines)
            fresh[raw] = _Seen(quick, key, bs, row)
            rows[row.label] = row
        self._live = fresh
        self._delivery, self._delivery_next = self._delivery_next, {}
        known = {label: row.routines for label, row in rows.items()}
        if recent:
            self._add_closed(snapshot, recent, rows, known)
        self._known_routines = known
        if needle:
            rows = {label: row for label, row in rows.items() if row.matches(needle)}
        return rows

    def _live_row(
        self, p: dict[str, Any], key: tuple[Any, ...], rate: tuple[float, float] | None
    ) -> PeerRow:
        previous = key[3]
        close = p.get("close")
        routines: dict[str, tuple[str, int]] = {}
        for r in p.get("routines") or ():  # later entries are newer: the last one wins
            routines[_text(r.get("service"), 40)] = (
                _text(r.get("state"), 20),
                int(r.get("generation") or 0),
            )
        return PeerRow(
            label=_text(p.get("label"), 40),
            live=True,
            addr=_text(p.get("addr"), 60),
            direction=_direction(p.get("direction")),
            age=float(p.get("age_s") or 0.0),
            conn_id=int(p.get("conn_id") or 0),
            bytes_in=int(p.get("bytes_in") or 0),
            bytes_out=int(p.get("bytes_out") or 0),
            rate_in=None if rate is None else rate[0],
            rate_out=None if rate is None else rate[1],
            misbehavior=int(p.get("misbehavior_count") or 0),
            close=close_text(close)
            if close is not None
            else f"{self.glyphs.reconnected} {previous}"
            if previous
            else "",
            routines=routines,
            header_sync=key[5],
            block_sync=key[6],
            stalled=key[7],
            throttled=key[8],
            glyphs=self.glyphs,
        )

    def _add_closed(
        self,
        snapshot: Snapshot,
        recent: list[dict[str, Any]],
        rows: dict[str, PeerRow],
        known: dict[str, dict[str, tuple[str, int]]],
    ) -> None:
        misbehavior: dict[str, int] = {}
        for m in snapshot.get("misbehavior") or ():
            misbehavior[str(m.get("label"))] = misbehavior.get(str(m.get("label")), 0) + 1
        for c in recent:  # oldest first, so the newest closure of a label wins
            label = _text(c.get("label"), 40)
            if label in rows and rows[label].live:
                continue  # it reconnected: the live row wins (its close column says ↻)
            closed_at = float(c.get("closed_at") or 0.0)
            close = close_text(c)
            rows[label] = PeerRow(
                label=label,
                live=False,
                addr=_text(c.get("addr"), 60),
                direction=_direction(c.get("direction")),
                age=max(0.0, closed_at - float(c.get("connected_at") or 0.0)),
                conn_id=int(c.get("conn_id") or 0),
                bytes_in=int(c.get("bytes_in") or 0),
                bytes_out=int(c.get("bytes_out") or 0),
                rate_in=None,
                rate_out=None,
                misbehavior=misbehavior.get(str(c.get("label")), 0),
                close=close,
                routines=self._panicked(label, close),
                glyphs=self.glyphs,
            )
            known[label] = self._known_routines.get(label, {})

    def _panicked(self, label: str, close: str) -> dict[str, tuple[str, int]]:
        """A peer closed by a panic keeps the panicked routine's glyph on its closed row.

        The node closes a connection with reason ``panic:<service>`` when a routine panics;
        the snapshot after the close has no routines for that peer, so the generation comes
        from the last frame in which the peer was live.
        """
        if not close.startswith("panic:"):
            return {}
        service = close.removeprefix("panic:").split(" ", 1)[0]
        generation = self._known_routines.get(label, {}).get(service, ("", 0))[1]
        return {service: ("panicked", generation)}

    def _smoothed(
        self, bs: BlockSyncCells | None, key: tuple[Any, Any], now: float
    ) -> BlockSyncCells | None:
        """``bs`` with the delivery rate of an idle peer (nothing outstanding) smoothed.

        The node reports a windowed maximum over 10 s: for a busy peer that is steady, but an
        idle one (at the tip, a block now and then) swings between a single block's burst
        rate and 0 as samples enter and leave the window. An idle peer's rate moves toward
        the reported one with a time constant of :data:`RATE_WINDOW_S` of snapshot time; a
        busy peer's is shown as reported. A repeated snapshot changes nothing.
        """
        if bs is None or bs[3] is None:
            return bs
        rate = bs[3]
        before = self._delivery.get(key)
        if before is not None and before[1] == rate:  # settled (most frames): shown as is
            self._delivery_next[key] = (max(now, before[0]), rate)
            return bs
        if before is not None and now <= before[0]:
            shown = before[1]  # the same frame again
        elif before is None or bs[0] != 0:
            shown = rate
        else:
            t0, value = before
            shown = value + (rate - value) * (1.0 - math.exp(-(now - t0) / RATE_WINDOW_S))
            if abs(shown - rate) <= max(1.0, 0.01 * rate):
                shown = rate  # close enough: settle, so the row is reused again
        self._delivery_next[key] = (max(now, before[0]) if before else now, shown)
        return bs if shown == rate else (bs[0], bs[1], bs[2], shown, bs[4])

    def _track_rates(self, peers: Any, now: float) -> None:
        """Bytes per second over the last :data:`RATE_WINDOW_S` seconds of snapshot time, per
        (label, conn_id): from the newest sample at least that old (or the oldest kept, for a
        young connection) to this one.

        A snapshot no newer than the last (a repeat render, a paused view) keeps the
        previous rates; a peer's first snapshot has no rate yet.
        """
        if self._rate_time is not None and now <= self._rate_time:
            return
        history = self._rate_history
        next_history: dict[tuple[Any, Any], deque[tuple[float, int, int]]] = {}
        next_rates: dict[tuple[Any, Any], tuple[float, float]] = {}
        horizon = now - RATE_WINDOW_S
        for p in peers:
            try:
                label, conn_id, b_in, b_out = _BYTES(p)
            except KeyError:
                label, conn_id, b_in, b_out = (p.get(name) for name in _BYTES_NAMES)
            key = (label, conn_id)
            b_in, b_out = int(b_in or 0), int(b_out or 0)
            samples = history.get(key)
            if samples is None:
                samples = deque()
            else:
                # Keep one sample at or before the horizon: the window's base.
                while len(samples) > 1 and samples[1][0] <= horizon:
                    samples.popleft()
                t0, in0, out0 = samples[0]
                dt = now - t0
                r_in, r_out = (b_in - in0) / dt, (b_out - out0) / dt
                next_rates[key] = (r_in if r_in > 0.0 else 0.0, r_out if r_out > 0.0 else 0.0)
            samples.append((now, b_in, b_out))
            next_history[key] = samples
        self._rate_time, self._rate_history, self._rates = now, next_history, next_rates
