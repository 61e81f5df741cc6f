"""The Peers view's row model: snapshot documents in, one :class:`PeerRow` per peer out.

No Textual here: this is the part of a refresh that is plain Python over the snapshot, kept
apart from the widget so it can be read (and measured) on its own.

Why it is shaped this way:

* A refresh at 4 Hz with 1,000 peers must cost little when little changed. Each live peer's
  raw fields are gathered into a key; when the key equals last frame's, last frame's
  :class:`PeerRow` (and the cells it already rendered) is reused as is, and the table skips
  it without comparing a single cell (:meth:`RowBuilder.build` has the cheaper steps).
* Rates are the node's when a brief document carries them (so the console keeps no history
  and formats a rate only when it changed), else bytes per second between snapshots on the
  snapshots' own clock (:mod:`console.widgets.byte_rates`).
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
  :data:`~node_core.observe.peer_rates.RATE_WINDOW_S` seconds. The block-sync delivery rate of
  an idle peer is smoothed likewise (see :meth:`RowBuilder._smoothed`).
"""

from __future__ import annotations

import math
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
    short_peer,
)
from console.widgets.block_sync_cells import (
    SORT_INDEX,
    BlockSyncCells,
    block_sync_cells,
    block_sync_row_cells,
)
from console.widgets.byte_rates import RateHistory, drawn_rate, rate_key
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
from node_core.observe.peer_rates import RATE_WINDOW_S

#: How long a closed peer stays in the table, in seconds of snapshot time.
KEEP_CLOSED_S = 5.0

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
    ) -> PeerRow:
        """This live row with a new age and rates: the same row otherwise, its rendered cells
        patched in their three columns (the last but the connection's own three) from the
        rates as drawn (``drawn``: each one's text and whether it is idle, see
        :func:`~console.widgets.byte_rates.rate_key`) and, when ``new_age``, the age's new text."""
        rate_in, rate_out = (None, None) if rate is None else rate
        row = PeerRow(
            self.label, True, self.addr, self.direction, age, self.conn_id, rate_in, rate_out,
            self.misbehavior, self.close, self.routines,
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
_FIELD_NAMES = ("label", "addr", "direction", "conn_id", "misbehavior_count", "close")
#: Those, the routines, throttle and age: what the builder reads of every peer first (the
#: byte counts are drawn only as rates, so they are not compared).
_QUICK_NAMES = (*_FIELD_NAMES, "routines", "throttle_bytes_per_s", "age_s")
_QUICK = itemgetter(*_QUICK_NAMES)
#: The byte rates a brief document's peer carries, computed by the node (peer_rates.py).
_NODE_RATE_NAMES = ("bytes_in_per_s", "bytes_out_per_s")
_QUICK_RATED_NAMES = (*_QUICK_NAMES, *_NODE_RATE_NAMES)
_QUICK_RATED = itemgetter(*_QUICK_RATED_NAMES)


def _age_bucket(seconds: float) -> int:
    """Changes exactly when :func:`age_text` can change (the row-reuse key uses it)."""
    return int(seconds) if seconds < 600 else 600 + int(seconds // 60)


@dataclass(slots=True)
class _Seen:
    """What the builder keeps of one live peer between frames (see :meth:`RowBuilder.build`)."""

    #: The raw fields, routines and throttle as sent: compared first.
    fields: tuple[Any, ...]
    #: The age's bucket (:func:`_age_bucket`), the rates as compared (the node's numbers, or
    #: as drawn), the rates as drawn, and the close reason of the peer's last connection.
    bucket: int
    rates: Any
    drawn: tuple[tuple[str, bool], tuple[str, bool]] | None
    previous: str | None
    #: What the row was built from, parsed: compared when ``fields`` differ.
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
        #: Rates for a document without the node's (byte_rates.py).
        self._history = RateHistory()
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
        """Rows for ``snapshot`` by label, live peers first, narrowed to ``needle``.

        Per live peer, cheapest first: last frame's row as is when the raw fields, routines,
        throttle, age bucket and rates compare equal (most peers, most frames); that row with
        its rate and age cells patched when only those moved; else a row built afresh. The
        rates are the node's when the document carries them (a brief document from a node
        that computes them), else this builder's own over :data:`RATE_WINDOW_S`.
        """
        now = float(snapshot.get("generated_at") or 0.0)
        peers: Any = snapshot.get("peers") or ()
        node_rates = bool(peers) and _NODE_RATE_NAMES[0] in peers[0]
        if not node_rates:
            self._history.track(peers, now)
        getter, names = (_QUICK_RATED, _QUICK_RATED_NAMES) if node_rates else (_QUICK, _QUICK_NAMES)
        recent = [
            c
            for c in snapshot.get("recently_closed") or ()
            if now - float(c.get("closed_at") or 0.0) <= KEEP_CLOSED_S
        ]
        previous = {c.get("label"): close_text(c) for c in recent}  # newest closure wins
        rates, last, fresh = self._history.rates, self._live, {}
        self.new_services = set()
        rows: dict[str, PeerRow] = {}
        rate: tuple[float, float] | None
        drawn: tuple[tuple[str, bool], tuple[str, bool]] | None
        for p in peers:
            try:
                got = getter(p)  # one C call for the common, complete document
            except KeyError:
                got = tuple(p.get(name) for name in names)
            raw, fields = got[0], got[:8]
            age = float(got[8] or 0.0)
            bucket = _age_bucket(age)
            if node_rates:
                compared: Any = got[9:]
                rate = None if got[9] is None else (float(got[9]), float(got[10] or 0.0))
            else:
                rate = rates.get((raw, got[3]))
                compared = None if rate is None else (rate_key(rate[0]), rate_key(rate[1]))
            prev = previous.get(raw) if previous else None
            hit = last.get(raw)
            if hit is not None and hit.fields == fields and hit.previous == prev:
                bs = hit.block_sync
                if (
                    bs is None
                    or bs[3] is None
                    or self._smoothed(bs, (raw, got[3]), now) is hit.key[6]
                ):
                    if hit.bucket == bucket and hit.rates == compared:
                        fresh[raw] = hit  # nothing it draws moved (most peers, most frames)
                        rows[hit.row.label] = hit.row
                        continue
                    # Only the age or a rate moved: patch those cells of last frame's row.
                    if hit.rates == compared:
                        drawn = hit.drawn
                    elif node_rates:
                        drawn = None if rate is None else (drawn_rate(rate[0]), drawn_rate(rate[1]))
                    else:
                        drawn = compared
                    row = hit.row.moved(age, rate, drawn, hit.bucket != bucket)
                    key = (hit.key[0], bucket, drawn, *hit.key[3:])
                    fresh[raw] = _Seen(fields, bucket, compared, drawn, prev, key, bs, row)
                    rows[row.label] = row
                    continue
            if node_rates:
                drawn = None if rate is None else (drawn_rate(rate[0]), drawn_rate(rate[1]))
            else:
                drawn = compared
            routines = got[6]
            bs = block_sync_cells(routines)
            key = (
                got[:6],
                bucket,
                drawn,
                prev,
                tuple(
                    [
                        (r.get("service"), r.get("state"), r.get("generation"))
                        for r in routines or ()
                    ]
                ),
                header_sync_cells(routines),
                self._smoothed(bs, (raw, got[3]), now),
                stalled_services(routines),
                bool(got[7]),
            )
            if hit is not None and hit.key == key:
                row = hit.row
            else:
                row = self._live_row(p, key, rate)
                self.new_services.update(row.routines)
            fresh[raw] = _Seen(fields, bucket, compared, drawn, prev, key, bs, row)
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
