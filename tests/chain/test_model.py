"""Header/block codec, proof of work, genesis constants and checkpoints."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node_core.chain
from node_core.chain.genesis import (
    GENESIS_HASHES,
    GENESIS_TIME,
    Checkpoints,
    genesis_block,
    genesis_body,
    genesis_hash,
    genesis_header,
)
from node_core.chain.model import (
    HASH_BYTES,
    HEADER_BYTES,
    MAX_BODY_BYTES,
    NONCE_OFFSET,
    ZERO_HASH,
    Block,
    BlockHeader,
    blake2b_256,
    body_root,
    hash_from_hex,
    hash_hex,
    header_hash,
    short_hex,
    work,
)
from node_core.chain.pow import leading_zero_bits, meets_pow, solve, target
from node_core.protocol.errors import CodecError, InvalidValue, OverCap, TrailingBytes, Truncated
from node_core.protocol.limits import NetworkId

u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
h32 = st.binary(min_size=32, max_size=32)
headers = st.builds(
    BlockHeader,
    version=u32,
    height=u32,
    prev_hash=h32,
    body_root=h32,
    time=u64,
    bits=st.integers(0, 255),
    nonce=u64,
)


def _header(**kw: object) -> BlockHeader:
    fields: dict[str, object] = {
        "version": 1,
        "height": 5,
        "prev_hash": b"\x11" * 32,
        "body_root": body_root(b"body"),
        "time": 1_800_000_000,
        "bits": 8,
        "nonce": 0,
    }
    fields.update(kw)
    return BlockHeader(**fields)  # type: ignore[arg-type]


# --- header codec ---------------------------------------------------------------------------


def test_header_layout_is_fixed_little_endian() -> None:
    h = _header(version=1, height=0x01020304, time=0x0A0B, bits=3, nonce=0x0102)
    raw = h.encode()
    assert len(raw) == HEADER_BYTES == 89
    assert raw == struct.pack(
        "<II32s32sQBQ", 1, 0x01020304, h.prev_hash, h.body_root, 0x0A0B, 3, 0x0102
    )
    assert raw[NONCE_OFFSET:] == struct.pack("<Q", 0x0102)
    assert h.hash == header_hash(h) == blake2b_256(raw)
    assert len(h.hash) == HASH_BYTES


@given(headers)
def test_header_round_trip(h: BlockHeader) -> None:
    raw = h.encode()
    assert len(raw) == HEADER_BYTES
    back = BlockHeader.decode(raw)
    assert back == h
    assert back.hash == h.hash


@settings(max_examples=300)
@given(st.binary(max_size=2 * HEADER_BYTES))
def test_arbitrary_bytes_only_raise_codec_error(data: bytes) -> None:
    try:
        h = BlockHeader.decode(data)
    except CodecError:
        return
    assert h.encode() == data


@given(st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES))
def test_every_header_sized_input_decodes(data: bytes) -> None:
    # Every field's range is its full width, so any 89 bytes are a header; PoW is consensus.
    assert BlockHeader.decode(data).encode() == data


@settings(max_examples=200)
@given(st.binary(max_size=HEADER_BYTES + 64))
def test_arbitrary_block_bytes_only_raise_codec_error(data: bytes) -> None:
    try:
        b = Block.decode(data)
    except CodecError:
        return
    assert b.encode() == data


def test_header_decode_rejects_truncation_and_trailing_bytes() -> None:
    raw = _header().encode()
    with pytest.raises(Truncated):
        BlockHeader.decode(raw[:-1])
    with pytest.raises(TrailingBytes):
        BlockHeader.decode(raw + b"\x00")
    assert BlockHeader.decode(memoryview(raw)) == _header()


@pytest.mark.parametrize(
    "kw",
    [
        {"version": -1},
        {"height": 1 << 32},
        {"time": 1 << 64},
        {"bits": 256},
        {"nonce": -1},
        {"prev_hash": b"\x00" * 31},
        {"body_root": bytearray(32)},
        {"height": True},
    ],
)
def test_header_refuses_out_of_range_fields(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        _header(**kw)


def test_hash_is_not_part_of_equality_or_init() -> None:
    a = _header()
    assert a == _header()
    assert a.with_nonce(1) != a
    assert a.with_nonce(1).with_nonce(0) == a
    assert ", hash=" not in repr(a)


# --- block codec ----------------------------------------------------------------------------


def test_block_round_trip_and_cap() -> None:
    body = b"x" * 1000
    blk = Block(_header(body_root=body_root(body)), body)
    assert Block.decode(blk.encode()) == blk
    assert blk.hash == blk.header.hash and blk.height == 5
    empty = Block(_header(), b"")
    assert Block.decode(empty.encode()) == empty
    with pytest.raises(OverCap):
        Block(_header(), bytes(MAX_BODY_BYTES + 1))
    over = _header().encode() + struct.pack("<I", MAX_BODY_BYTES + 1)
    with pytest.raises(OverCap):  # length checked before the (absent) bytes are sliced
        Block.decode(over)
    with pytest.raises(Truncated):
        Block.decode(blk.encode()[:-1])
    with pytest.raises(TrailingBytes):
        Block.decode(blk.encode() + b"\x00")


# --- helpers --------------------------------------------------------------------------------


def test_work_and_hex_helpers() -> None:
    assert work(0) == 1 and work(8) == 256 and work(256) == 1 << 256
    with pytest.raises(ValueError):
        work(257)
    assert _header(bits=10).work == 1024
    h = bytes(range(32))
    assert hash_hex(h) == h.hex() and short_hex(h) == h.hex()[:8]
    assert hash_from_hex(h.hex()) == h
    with pytest.raises(ValueError):
        hash_from_hex("zz")
    with pytest.raises(ValueError):
        hash_from_hex("00")
    assert _header(height=7).label().startswith("#7:")


# --- proof of work --------------------------------------------------------------------------


def test_leading_zero_bits_msb_first() -> None:
    assert leading_zero_bits(ZERO_HASH) == 256
    assert leading_zero_bits(b"\x80" + bytes(31)) == 0
    assert leading_zero_bits(b"\x00\x01" + bytes(30)) == 15
    assert leading_zero_bits(b"\x00\x00\x00\x10" + b"\xff" * 28) == 27
    assert target(0) == 1 << 256 and target(256) == 1


@pytest.mark.parametrize("bits", [0, 1, 4, 8, 12])
def test_solve_meets_pow_and_agrees_with_bit_count(bits: int) -> None:
    solved = solve(_header(bits=bits, nonce=12345))
    assert meets_pow(solved)
    assert leading_zero_bits(solved.hash) >= bits
    # Every earlier nonce fails: solve returns the *first* solution.
    for n in range(solved.nonce):
        assert not meets_pow(solved.with_nonce(n))


def test_meets_pow_rejects_unsolved_and_start_nonce_is_respected() -> None:
    solved = solve(_header(bits=8))
    later = solve(_header(bits=8), start_nonce=solved.nonce + 1)
    assert later.nonce > solved.nonce and meets_pow(later)
    bad = next(
        _header(bits=8, nonce=n)
        for n in range(1000)
        if leading_zero_bits(_header(bits=8, nonce=n).hash) < 8
    )
    assert not meets_pow(bad)
    # bits=255 is never met in practice: an impossible demand, not a crash.
    with pytest.raises(ValueError):
        solve(_header(bits=255), max_tries=50)
    with pytest.raises(ValueError):
        solve(_header(), start_nonce=-1)


# --- genesis --------------------------------------------------------------------------------


@pytest.mark.parametrize("nid", list(NetworkId))
def test_genesis_is_fixed_solved_and_recorded(nid: NetworkId) -> None:
    g = genesis_header(nid)
    assert g.height == 0 and g.prev_hash == ZERO_HASH and g.time == GENESIS_TIME
    assert g.body_root == body_root(genesis_body(nid))
    assert genesis_body(nid) == f"zakura genesis {nid.name.lower()}".encode()
    assert meets_pow(g)
    assert g.hash == genesis_hash(nid) == GENESIS_HASHES[nid]
    # The recorded nonce is the first solution, i.e. reproducible from scratch.
    assert solve(g.with_nonce(0)) == g
    blk = genesis_block(nid)
    assert blk.header == g and body_root(blk.body) == g.body_root


def test_genesis_differs_per_network() -> None:
    assert len({genesis_hash(n) for n in NetworkId}) == len(NetworkId)
    assert genesis_hash(NetworkId.REGTEST) == genesis_hash(3)  # type: ignore[arg-type]


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_finalized_ranges() -> None:
    a, b = b"\xaa" * 32, b"\xbb" * 32
    cps = Checkpoints.from_mapping({2000: b, 1000: a})
    assert cps.heights == (1000, 2000) and len(cps) == 2
    assert cps.finalized_height == 2000
    assert cps.checkpoint_at(1000) == a and cps.checkpoint_at(2000) == b
    assert cps.checkpoint_at(1500) is None and cps.checkpoint_at(5000) is None
    assert cps.is_finalized_range(1, 1000)
    assert cps.is_finalized_range(1001, 2000)
    assert cps.is_finalized_range(2000, 2000)
    assert not cps.is_finalized_range(1, 999)
    assert not cps.is_finalized_range(1000, 1999)
    assert not cps.is_finalized_range(2001, 2100)
    with pytest.raises(ValueError):
        cps.is_finalized_range(10, 9)
    assert cps.next_at_or_above(0) == 1000
    assert cps.next_at_or_above(1001) == 2000
    assert cps.next_at_or_above(2001) is None
    empty = Checkpoints()
    assert empty.finalized_height is None and not empty.is_finalized_range(0, 10)


def test_checkpoints_contradicts() -> None:
    g = genesis_header(NetworkId.REGTEST)
    cps = Checkpoints.from_mapping({0: g.hash})
    assert not cps.contradicts(g)
    assert cps.contradicts(genesis_header(NetworkId.MAINNET))
    assert not cps.contradicts(_header(height=1))


@pytest.mark.parametrize(
    "entries",
    [
        ((2, b"\x00" * 32), (1, b"\x00" * 32)),
        ((1, b"\x00" * 32), (1, b"\x01" * 32)),
        ((-1, b"\x00" * 32),),
        ((1, b"\x00" * 31),),
    ],
)
def test_checkpoints_validated(entries: tuple[tuple[int, bytes], ...]) -> None:
    with pytest.raises(ValueError):
        Checkpoints(entries)


def test_checkpoints_from_pairs_rejects_duplicates() -> None:
    with pytest.raises(ValueError):
        Checkpoints.from_pairs([(5, b"\x00" * 32), (5, b"\x01" * 32)])
    assert Checkpoints.from_pairs([(5, b"\x00" * 32), (1, b"\x01" * 32)]).heights == (1, 5)


# --- sans-I/O -------------------------------------------------------------------------------

FORBIDDEN = frozenset({"asyncio", "socket", "selectors", "ssl", "sqlite3"})
CHAIN_DIR = Path(node_core.chain.__file__).resolve().parent


@pytest.mark.parametrize("name", ["__init__.py", "model.py", "pow.py", "genesis.py", "miner.py"])
def test_chain_core_modules_import_no_io(name: str) -> None:
    tree = ast.parse((CHAIN_DIR / name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            continue
        for mod in mods:
            assert mod.split(".")[0] not in FORBIDDEN, f"{name}: imports {mod}"
            assert mod != "node_core.chain.store", f"{name}: imports the store"
