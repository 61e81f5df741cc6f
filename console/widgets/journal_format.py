"""Plain-text forms of one journal row, shared by the journal log and the overview's tail.

Every value here can come from a peer (close reasons, dial errors, addresses), so every one
passes through :func:`~console.format.clean` before it reaches a widget. Nothing here builds
markup: callers wrap the strings in ``Text``/``Content`` with explicit styles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.client import JournalRow
from console.format import clean, clock

#: Longest ``k=v`` list shown for one event: keeps a hostile reason from widening the table.
FIELDS_LIMIT = 160


def fields_text(fields: Mapping[str, Any] | None, limit: int = FIELDS_LIMIT) -> str:
    """``k=v`` pairs joined by spaces, in the order the node emitted them."""
    if not fields:
        return ""
    text = " ".join(f"{clean(k, 40)}={field_value(v)}" for k, v in fields.items())
    return clean(text, limit)


def field_value(v: object) -> str:
    """One field value as every view shows it: ``-`` for none (not ``None``), floats without
    trailing zeros, strings cleaned."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return clean(v, 80)


def time_text(wall: float, millis: bool = True) -> str:
    """Time of day (UTC) of an event; milliseconds order events inside a busy second."""
    base = clock(wall)
    if not millis:
        return base
    return f"{base}.{int((wall % 1) * 1000):03d}"


def text_or_blank(value: object, limit: int = 40) -> str:
    """A cleaned string, or an empty one for ``None`` (node-wide events have no peer)."""
    return "" if value is None else clean(value, limit)


def short_label(label: object) -> str:
    """A peer label without its ``peer:`` prefix, for the overview's compact panels."""
    return clean(label if label is not None else "?", 32).removeprefix("peer:")


def row_texts(row: JournalRow) -> tuple[str, str, str, str, str, str, str]:
    """(time, seq, table, event, peer, service, fields) of one journal row, all cleaned.

    The peer is shown without its ``peer:`` prefix (16 hex digits identify it; the peer
    filter matches substrings, so typing those digits finds it).
    """
    return (
        time_text(float(row.get("wall", 0.0))),
        str(int(row.get("seq", 0))),
        text_or_blank(row.get("table"), 16),
        text_or_blank(row.get("event"), 32),
        short_label(row["peer"]) if row.get("peer") else "",
        text_or_blank(row.get("service"), 16),
        fields_text(row.get("fields")),
    )
