"""The strict Ed25519 rules (docs/PROTOCOL.md §2): small-order and non-canonical keys and
signatures are refused, honest ones never are.

The curve arithmetic here (affine addition, doubling in extended coordinates) is written
independently of ``node_core.protocol.ed25519_rules`` so the module's list of small-order
encodings is checked against a derivation, not against itself.
"""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from node_core.identity import Identity, is_valid_node_id, verify
from node_core.protocol import ed25519_rules as rules
from node_core.protocol.ed25519_rules import (
    SMALL_ORDER_ENCODINGS,
    L,
    P,
    acceptable_public_key,
    acceptable_signature,
    decode_point,
    public_key_problem,
    signature_problem,
)

IDENTITY = (0, 1)
IDENTITY_BYTES = b"\x01" + bytes(31)
D = (-121665 * pow(121666, P - 2, P)) % P

# --- independent curve arithmetic ---------------------------------------------------------


def on_curve(x: int, y: int) -> bool:
    """-x² + y² = 1 + d·x²·y² (RFC 8032 §5.1)."""
    return (-x * x + y * y - 1 - D * x * x * y * y) % P == 0


def add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    """Affine Edwards addition (complete on this curve)."""
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    out = IDENTITY
    while k:
        if k & 1:
            out = add(out, point)
        point = add(point, point)
        k >>= 1
    return out


def times_eight_is_identity(point: tuple[int, int]) -> bool:
    """8·P = identity, by three doublings in extended coordinates (X:Y:Z, a = -1)."""
    x, y, z = point[0], point[1], 1
    for _ in range(3):
        a, b, c = x * x % P, y * y % P, 2 * z * z % P
        e = ((x + y) ** 2 - a - b) % P
        g = (b - a) % P
        f = (g - c) % P
        h = (-a - b) % P
        x, y, z = e * f % P, g * h % P, f * g % P
    return x == 0 and y == z


def encode(point: tuple[int, int]) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def derive_small_order_points() -> set[bytes]:
    """The 8-torsion subgroup, derived from scratch.

    The group has order 8·L with L an odd prime, so the points with 8·P = identity are its
    2-Sylow subgroup, of order exactly 8. ``L·Q`` for any point ``Q`` lies in it; one with
    ``4·T != identity`` has order 8 and generates all eight.
    """
    rng = random.Random(215)
    while True:
        q = decode_point(rng.randbytes(32))
        if q is None:
            continue
        t = mul(L, q)
        if mul(4, t) != IDENTITY:
            return {encode(mul(k, t)) for k in range(8)}


def backend_accepts(node_id: bytes, msg: bytes, sig: bytes) -> bool:
    """Plain RFC 8032 verification, without our rules (what the node relied on before)."""
    try:
        Ed25519PublicKey.from_public_bytes(node_id).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the small-order list --------------------------------------------------------------------


def test_small_order_list_is_exactly_the_points_of_order_dividing_8() -> None:
    derived = derive_small_order_points()
    assert len(derived) == 8
    assert derived == SMALL_ORDER_ENCODINGS
    for enc in SMALL_ORDER_ENCODINGS:
        point = decode_point(enc)
        assert point is not None and on_curve(*point)
        assert times_eight_is_identity(point)
        assert encode(point) == enc  # canonical


def test_a_large_order_point_is_not_small_order() -> None:
    node_id = Identity.from_seed(bytes(32)).node_id
    point = decode_point(node_id)
    assert point is not None
    assert not times_eight_is_identity(point)
    assert mul(L, point) == IDENTITY  # an honest key has prime order L


@pytest.mark.parametrize("enc", sorted(SMALL_ORDER_ENCODINGS), ids=lambda b: b.hex())
def test_every_small_order_point_is_refused_as_key_and_as_r(enc: bytes) -> None:
    assert public_key_problem(enc) == "small_order"
    assert not is_valid_node_id(enc)
    assert signature_problem(enc + bytes(32)) == "small_order"
    assert signature_problem(enc + (L - 1).to_bytes(32, "little")) == "small_order"
    honest = Identity.generate()
    assert not verify(honest.node_id, b"m", enc + bytes(32))
    assert not verify(enc, b"m", honest.sign(b"m"))


# --- the reported forgery -------------------------------------------------------------------


def test_identity_point_forgery_is_refused() -> None:
    """Issue 16 defect 3: node id 01 00..00 with R = 01 00..00, S = 0."""
    forged = IDENTITY_BYTES + bytes(32)
    assert public_key_problem(IDENTITY_BYTES) == "small_order"
    assert signature_problem(forged) == "small_order"
    for msg in (b"", b"zakura-ctrl-initiator-v1" + bytes(32), b"anything at all"):
        assert not verify(IDENTITY_BYTES, msg, forged)


def test_the_plain_backend_accepts_what_the_rules_stop() -> None:
    """Why the rules exist. If a future backend refuses these too, the rules are redundant
    rather than wrong, and this test says so instead of failing."""
    accepted = [
        enc
        for enc in [IDENTITY_BYTES, (P + 1).to_bytes(32, "little")]
        if backend_accepts(enc, b"any message", IDENTITY_BYTES + bytes(32))
    ]
    if not accepted:
        pytest.skip("the cryptography backend now refuses small-order keys itself")
    for enc in accepted:
        assert not verify(enc, b"any message", IDENTITY_BYTES + bytes(32))


# --- canonical encodings --------------------------------------------------------------------


def _large_order_small_y() -> int:
    """The smallest y whose point is on the curve and of large order (so y + p < 2^255)."""
    for y in range(2, 19):
        point = decode_point(y.to_bytes(32, "little"))
        if point is not None and not times_eight_is_identity(point):
            return y
    raise AssertionError("no y < 19 on the curve")


def test_non_canonical_y_is_refused() -> None:
    y = _large_order_small_y()
    canonical = y.to_bytes(32, "little")
    assert acceptable_public_key(canonical)  # the same point, encoded canonically, is fine
    unreduced = (y + P).to_bytes(32, "little")
    assert public_key_problem(unreduced) == "non_canonical"
    assert signature_problem(unreduced + bytes(32)) == "non_canonical"
    # Unreduced encodings of small-order points fail as non-canonical first.
    for value in (P, P + 1, P + 1 | 1 << 255):
        enc = value.to_bytes(32, "little")
        assert public_key_problem(enc) == "non_canonical"
        assert signature_problem(enc + bytes(32)) == "non_canonical"
    assert public_key_problem(b"\xff" * 32) == "non_canonical"


@pytest.mark.parametrize("y", [1, P - 1], ids=["identity", "order-2"])
def test_sign_bit_with_x_zero_is_non_canonical(y: int) -> None:
    enc = (y | 1 << 255).to_bytes(32, "little")
    assert public_key_problem(enc) == "non_canonical"
    assert signature_problem(enc + bytes(32)) == "non_canonical"
    assert decode_point(enc) is None


def test_off_curve_key_is_refused_and_off_curve_r_never_verifies() -> None:
    off = next(c for y in range(2, 1000) if decode_point(c := y.to_bytes(32, "little")) is None)
    assert public_key_problem(off) == "not_on_curve"
    # As R it passes the encoding rules (they are byte checks) but can never verify.
    honest = Identity.generate()
    sig = off + honest.sign(b"m")[32:]
    assert signature_problem(sig) is None
    assert not verify(honest.node_id, b"m", sig)


def test_wrong_lengths() -> None:
    assert public_key_problem(bytes(31)) == "wrong_length"
    assert public_key_problem(bytes(33)) == "wrong_length"
    assert signature_problem(bytes(63)) == "wrong_length"
    assert not acceptable_signature(b"")


# --- S ------------------------------------------------------------------------------------


def test_non_canonical_s_is_refused() -> None:
    honest = Identity.generate()
    sig = honest.sign(b"m")
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert signature_problem(malleated) == "non_canonical_s"
    assert not verify(honest.node_id, b"m", malleated)
    assert verify(honest.node_id, b"m", sig)
    for bad_s in (L, 2**256 - 1):
        assert signature_problem(sig[:32] + bad_s.to_bytes(32, "little")) == "non_canonical_s"
    # S = L - 1 is canonical: the rules let it through and the backend decides.
    assert signature_problem(sig[:32] + (L - 1).to_bytes(32, "little")) is None


# --- honest keys and signatures -------------------------------------------------------------


@given(seed=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=256))
def test_honest_keys_and_signatures_always_pass(seed: bytes, msg: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    node_id = key.public_key().public_bytes_raw()
    sig = key.sign(msg)
    assert public_key_problem(node_id) is None
    assert signature_problem(sig) is None
    assert verify(node_id, msg, sig)
    # The negated key (sign bit flipped) is a large-order point too.
    assert acceptable_public_key(node_id[:31] + bytes([node_id[31] ^ 0x80]))


def test_mixed_order_key_is_not_refused() -> None:
    """§2 refuses exactly the eight small-order points, not a key with a torsion component
    (signing for it still needs the secret scalar)."""
    honest = decode_point(Identity.from_seed(b"\x07" * 32).node_id)
    torsion = decode_point(sorted(SMALL_ORDER_ENCODINGS)[1])
    assert honest is not None and torsion is not None
    mixed = encode(add(honest, torsion))
    assert acceptable_public_key(mixed)


@given(enc=st.binary(min_size=32, max_size=32))
def test_decoding_is_canonical_and_on_the_curve(enc: bytes) -> None:
    """Whatever decodes is on the curve and re-encodes to the very same bytes."""
    point = decode_point(enc)
    if point is None:
        assert public_key_problem(enc) in ("non_canonical", "not_on_curve")
        return
    assert on_curve(*point)
    assert encode(point) == enc
    assert rules.encoding_problem(enc) is None
    expected = "small_order" if times_eight_is_identity(point) else None
    assert public_key_problem(enc) == expected
