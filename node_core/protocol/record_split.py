"""Cutting the connection's byte stream into mux records, many per read (sans-I/O).

Why: the connection used to await two ``readexactly`` calls per record (header, payload),
each a coroutine step and a copy out of the ``StreamReader``. Reading large chunks and cutting
every complete record out of them in one synchronous pass costs one Python call per record
and no copy for a record that lies within one chunk: its payload is a ``memoryview`` slice of
that chunk.

Invariants:
- A record header is decoded (and its declared length checked against its cap, by the
  ``decode_header`` it is given: ``MuxState.receive_header``) as soon as its 9 bytes are
  here, before any byte of its payload is kept. So what this splitter keeps between chunks
  is at most one header and one capped payload, whatever a hostile peer declares.
- A payload handed out is a view of the chunk it arrived in (so it is only as stable as that
  chunk: the connection's receiver reuses its read buffer, and the stream rules copy what
  they keep) or, for a record that spanned chunks, of a buffer never reused.
- After a :class:`ProtocolViolation` the splitter is not used again (the connection closes).
"""

from __future__ import annotations

from collections.abc import Callable

from node_core.protocol.limits import MUX_HEADER_BYTES
from node_core.protocol.mux import RecordHeader
from node_core.protocol.mux_state import ProtocolViolation

#: What a record's payload is handed out as: a view of the chunk it arrived in, or of the
#: buffer a record spanning several chunks was completed in.
Payload = memoryview

#: ``MuxState.receive_header``: the record header, or the violation that closes.
HeaderDecoder = Callable[[bytes | memoryview], RecordHeader | ProtocolViolation]

_EMPTY = memoryview(b"")


class RecordSplitter:
    """Whole mux records out of chunks of a byte stream, in order."""

    __slots__ = ("_decode", "_partial", "_pending", "_pos", "_view")

    def __init__(self, decode_header: HeaderDecoder) -> None:
        self._decode = decode_header
        self._view = _EMPTY
        self._pos = 0
        #: Bytes of a record that spans chunks: its header until decoded, then its payload.
        self._partial = bytearray()
        #: The decoded header of the record whose payload ``_partial`` is collecting.
        self._pending: RecordHeader | None = None

    @property
    def buffered(self) -> int:
        """Bytes held here: the part of an incomplete record and the unparsed chunk."""
        return len(self._partial) + len(self._view) - self._pos

    def feed(self, chunk: bytes | memoryview) -> None:
        """Hand over the next chunk; the previous one must have been parsed to its end.

        A view of a buffer the caller reuses is fine as long as it is not overwritten
        before :meth:`next` returned None for it: payloads handed out are views of it.
        """
        if self._pos < len(self._view):
            raise RuntimeError("a chunk was fed before the previous one was parsed")
        self._view = memoryview(chunk)
        self._pos = 0

    def next(self) -> tuple[RecordHeader, Payload] | ProtocolViolation | None:
        """The next complete record, the violation its header is, or None: feed more."""
        view = self._view
        pos = self._pos
        end = len(view)
        if self._pending is not None or self._partial:
            return self._continue(view, pos, end)
        if end - pos < MUX_HEADER_BYTES:
            if pos < end:
                self._partial += view[pos:end]
                self._pos = end
            return None
        start = pos + MUX_HEADER_BYTES
        rec = self._decode(view[pos:start])
        if isinstance(rec, ProtocolViolation):
            return rec
        stop = start + rec.length
        if stop > end:
            # The payload's length passed its cap above: keep what came of it.
            self._pending = rec
            self._partial += view[start:end]
            self._pos = end
            return None
        self._pos = stop
        return rec, view[start:stop]

    def _continue(
        self, view: memoryview, pos: int, end: int
    ) -> tuple[RecordHeader, Payload] | ProtocolViolation | None:
        """Complete the record that an earlier chunk began."""
        partial = self._partial
        rec = self._pending
        if rec is None:
            take = min(MUX_HEADER_BYTES - len(partial), end - pos)
            partial += view[pos : pos + take]
            pos += take
            self._pos = pos
            if len(partial) < MUX_HEADER_BYTES:
                return None
            decoded = self._decode(bytes(partial))
            if isinstance(decoded, ProtocolViolation):
                return decoded
            rec = decoded
            del partial[:]
        take = min(rec.length - len(partial), end - pos)
        if take:
            partial += view[pos : pos + take]
            self._pos = pos + take
        if len(partial) < rec.length:
            self._pending = rec
            return None
        # A fresh buffer for the next spanning record: whoever holds this payload keeps it.
        self._pending = None
        self._partial = bytearray()
        return rec, memoryview(partial)
