"""The peer detail's block-sync section: what this peer can serve, the state of its download
window, the requests it still owes blocks for, why the last fill stopped, and how long until
its liveness deadline.

A plain function of one routine's ``block_sync`` document (``BlockSyncRoutine.view``), so it
can be read and tested without the screen. Every field may be missing: missing values show
as ``—``; peer-supplied values go through :func:`console.format.clean`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from console.format import clean
from console.widgets.block_sync_cells import STOP_STYLES

NO_VALUE = "—"
#: A liveness deadline closer than this (seconds) is shown as a warning.
LIVENESS_WARN_S = 5.0

#: Why a fill pass stopped, said the way an operator reads it (the code stays in brackets).
FILL_STOP_TEXT = {
    "no_status": "no Status from the peer yet",
    "no_work": "nothing left to fetch in its servable range",
    "retry_avoid": "the next height failed with this peer before",
    "cwnd_saturated": "its window is full",
    "lookahead_cap": "too far ahead of the download floor",
    "inflight_budget": "the byte budget is used up",
    "outbound_full": "its send queue is full",
    "send_error": "the request could not be sent",
    "retry_backoff": "held back after requests without progress, until its backoff ends",
    "other_chain": "it served a block of another chain at the next height",
}


def _num(value: object, unit: str = "", digits: int = 1) -> str:
    """A number as the section shows it; ``—`` when missing or malformed."""
    if value is None or isinstance(value, bool):
        return NO_VALUE
    if isinstance(value, int):
        return f"{value:,}{unit}"
    try:
        return f"{float(value):,.{digits}f}{unit}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return clean(value, 20)


def _yes(value: object) -> str:
    return NO_VALUE if value is None else "yes" if value else "no"


def fill_stop_text(reason: object) -> str:
    if reason is None:
        return NO_VALUE
    code = clean(reason, 40)
    said = FILL_STOP_TEXT.get(code)
    return f"{said} ({code})" if said else code


def _window(window: Mapping[str, Any]) -> Text:
    text = Text(no_wrap=False)
    text.append("window  ")
    text.append(f"cwnd {_num(window.get('cwnd'))}", style="bold")
    text.append(f" (hard cap {_num(window.get('hard_cap'))})")
    text.append(f" · phase {clean(window.get('phase') or NO_VALUE, 20)}")
    proven = window.get("proven")
    text.append(" · proven ")
    text.append(_yes(proven), style="yellow" if proven is False else "")
    text.append(f" · rtprop {_num(window.get('rtprop_ms'), ' ms')}")
    text.append(f" · srtt {_num(window.get('srtt_ms'), ' ms')}")
    rate = window.get("delivery_bytes_per_s")
    volume = NO_VALUE if not isinstance(rate, int | float) else f"{rate / 1e6:.2f} MB/s"
    text.append(
        f"\ndelivery {_num(window.get('delivery_blocks_per_s'), ' blk/s')}, {volume}"
        f" · reliability {_num(window.get('reliability'), digits=2)}"
    )
    stuck = window.get("requests_without_progress")
    text.append(" · requests without progress ")
    text.append(_num(stuck), style="yellow" if isinstance(stuck, int) and stuck > 0 else "")
    return text


def _requests(requests: list[Mapping[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
    for header in ("start", "count", "received", "deadline in"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in requests:
        deadline = r.get("deadline_in_s")
        late = isinstance(deadline, int | float) and deadline <= 0
        table.add_row(
            Text(_num(r.get("start_height"))),
            Text(_num(r.get("count"))),
            Text(_num(r.get("received"))),
            Text(
                NO_VALUE if deadline is None else f"{float(deadline):.1f} s",
                style="bold red" if late else "",
            ),
        )
    return table


def block_sync_section(bs: Mapping[str, Any]) -> RenderableType:
    """The routine's block-sync state: servable range, accepted blocks, outstanding heights,
    liveness, an operator stall, fill stop and when a held-back peer is asked again, then
    its window and its outstanding requests."""
    text = Text(no_wrap=False)
    text.append("block_sync  ", style="bold")
    servable = bs.get("servable")
    text.append("servable ")
    if isinstance(servable, Mapping):
        text.append(f"{_num(servable.get('low'))} to {_num(servable.get('high'))}")
    else:
        text.append("none (no Status yet)", style="dim")
    text.append(f" · accepted {_num(bs.get('accepted_blocks'))} blocks")
    text.append(f" · outstanding {_num(bs.get('outstanding'))} heights")
    liveness = bs.get("liveness_in_s")
    text.append(" · liveness ")
    if liveness is None:
        text.append("idle", style="dim")
    else:
        near = isinstance(liveness, int | float) and liveness <= LIVENESS_WARN_S
        text.append(f"{_num(liveness, ' s')} left", style="bold yellow" if near else "")
    stalled = bs.get("stalled_for_s")
    if isinstance(stalled, int | float):
        # Only while an operator stall (``s``) runs: it explains an idle window and a frozen
        # liveness clock, and is the console's only sign that the stall took.
        text.append(" · ")
        text.append(f"stalled {float(stalled):.1f} s left", style="bold yellow")
    stop = bs.get("fill_stop")
    text.append("\nlast fill stopped: ")
    text.append(fill_stop_text(stop), style=STOP_STYLES.get(str(stop), ""))
    window = bs.get("window")
    retry = window.get("retry_in_s") if isinstance(window, Mapping) else None
    if retry is not None:
        # A peer held back after requests without progress is asked again after a backoff
        # (issue 16): when, so the operator knows the idle window is not the end of it.
        text.append(" · ")
        text.append(f"retry in {_num(retry, ' s')}", style="bold yellow")
    parts: list[RenderableType] = [text]
    if isinstance(window, Mapping):
        parts.append(_window(window))
    requests = [r for r in bs.get("requests") or () if isinstance(r, Mapping)]
    if requests:
        parts.append(Text(f"requests ({len(requests)})", style="bold"))
        parts.append(_requests(requests))
    else:
        parts.append(Text("requests: none", style="dim"))
    parts.append(Text(""))
    return Group(*parts)
