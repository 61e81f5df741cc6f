"""Malformed HTTP requests are logged as one short, rate-limited line, not a traceback.

aiohttp logs every request it cannot parse (a too-long line, a bad status line, a bad
header, an invalid URL) at ERROR with a full traceback, about 600 bytes each: anyone who can
reach the API port could fill the node's log disk for free. :class:`BadRequestLogFilter`
turns each such record into one WARNING line naming the client and the parser's complaint
(cut, control characters escaped) and lets at most one through per ``interval``, counting
the ones it held back in the next line. Every other aiohttp record passes unchanged.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["BadRequestLogFilter", "install"]

#: Seconds between two bad-request lines.
INTERVAL = 1.0
#: Characters of the parser's complaint kept (it quotes the client's bytes).
MAX_DETAIL = 100


class BadRequestLogFilter(logging.Filter):
    """The filter on the ``aiohttp.server`` logger; see the module docstring."""

    def __init__(self, interval: float = INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._last = -float("inf")
        self.suppressed = 0
        self.total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.total += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        original = record.getMessage()
        detail = " ".join(str(exc).split())
        detail = detail.encode("ascii", "backslashreplace").decode()[:MAX_DETAIL]
        held, self.suppressed = self.suppressed, 0
        record.msg = "%s: %s: %s%s"
        record.args = (
            original,
            type(exc).__name__,
            detail,
            f" ({held} more since the last line)" if held else "",
        )
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_installed: BadRequestLogFilter | None = None


def install() -> BadRequestLogFilter:
    """Attach the filter to aiohttp's server logger once per process; returns it."""
    global _installed
    if _installed is None:
        _installed = BadRequestLogFilter()
        logging.getLogger("aiohttp.server").addFilter(_installed)
    return _installed
