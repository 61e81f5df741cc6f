"""The one error family every codec in :mod:`node_core.protocol` raises.

Decoders see bytes chosen by a possibly hostile peer. They must never raise anything but
:class:`CodecError` (or a subclass), so that the transport can turn every decode failure into
one well-defined reaction: close with the documented code and record the reason.
"""

from __future__ import annotations


class CodecError(ValueError):
    """Bytes that do not decode to a valid message. ``reason`` is a short stable label."""

    reason: str = "malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class Truncated(CodecError):
    """The input ended before the message did."""

    reason = "truncated"


class TrailingBytes(CodecError):
    """The message decoded but bytes were left over; we never ignore them."""

    reason = "trailing_bytes"


class OverCap(CodecError):
    """A declared length or count exceeds its cap (checked before anything is allocated)."""

    reason = "over_cap"


class BadMagic(CodecError):
    """A magic constant did not match."""

    reason = "bad_magic"


class InvalidFlag(CodecError):
    """An optional-field flag byte was neither 0 nor 1."""

    reason = "invalid_flag"


class InvalidValue(CodecError):
    """A field decoded but its value is outside what the protocol allows."""

    reason = "invalid_value"


class UnknownMessage(CodecError):
    """A message tag or type this protocol version does not define."""

    reason = "unknown_message"
