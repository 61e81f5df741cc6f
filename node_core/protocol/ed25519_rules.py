"""Strict encoding rules for Ed25519 keys and signatures from peers (sans-I/O, pure integers).

Why this exists: RFC 8032 verification, as the ``cryptography``/OpenSSL backend does it, only
checks ``encode(S·B - h·A) == R``. With a *small-order* public key ``A`` (one of the eight
points with ``8·A = identity``) the term ``h·A`` takes at most eight values whatever the
message, so a signature ``R = <small-order point>, S = 0`` verifies for a good share of all
messages without any secret key. For the identity point it verifies for *every* message: the
node id ``01 00..00`` with the signature ``01 00..00 ‖ 00..00`` completed a handshake. The
backend also accepts a key whose ``y`` is not reduced mod p (``y = p + 1`` is the identity
again), which opens the same hole through a non-canonical encoding. A node id must be
something only its key holder can sign for, so before the backend runs we refuse:

- a **public key** that is not canonically encoded (``y >= p``, or the x-sign bit set where
  ``x = 0``), is one of the eight small-order points, or does not decode to a curve point
  (RFC 8032 §5.1.3);
- a **signature** whose ``S`` is not below the group order ``L`` (``S + L`` would be a second,
  malleated encoding of the same signature; the backend refuses that one itself today, and
  checking it here keeps the rule independent of the backend), or whose ``R`` is not
  canonically encoded or is one of the eight small-order points. An ``R`` off the curve is
  left to the backend, which can never match it (it compares ``R`` with the encoding of a
  real point).

libsodium's verifier refuses these too. No honest key or signature is refused: an honest key
is ``s·B`` with ``B`` of prime order ``L``, an honest ``R`` is ``r·B``, neither is ever of
small order, and honest encoders emit only canonical encodings and ``S < L``. (ZIP 215 is
deliberately *more* permissive, for consensus compatibility; a peer identity has no such
constraint, so we take the strict side.) Keys of *mixed* order (a large-order point plus a
small-order one) are not refused: signing for one still needs the secret scalar.

Cost: the signature checks are integer comparisons on the bytes; the key check adds the one
modular square root of point decompression (a single ``pow``, about 0.1 ms), as before these
rules. Nothing is cached.
"""

from __future__ import annotations

from typing import Final, Literal

#: The field prime of Curve25519 / Ed25519.
P: Final = 2**255 - 19
#: The order of the base point B (a prime); the full group has order 8·L.
L: Final = 2**252 + 27742317777372353535851937790883648493
#: The Edwards curve constant d = -121665 / 121666 (RFC 8032 §5.1).
D: Final = (-121665 * pow(121666, P - 2, P)) % P
#: A square root of -1 mod p, used by the decompression of RFC 8032 §5.1.3.
SQRT_M1: Final = pow(2, (P - 1) // 4, P)

POINT_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
_Y_MASK: Final = (1 << 255) - 1

#: The canonical encodings of the eight points of small order (``8·P = identity``): the
#: canonical entries of libsodium's blocklist (its non-canonical entries are refused here as
#: non-canonical before this list is consulted, so they need no entry). Derived, not copied:
#: ``L·Q`` for a curve point ``Q`` lies in the 8-torsion subgroup, which on Ed25519 is cyclic
#: of order 8; a ``T = L·Q`` with ``4·T != identity`` generates it, and these are ``k·T`` for
#: k = 0..7 (orders 1, 8, 4, 8, 2, 8, 4, 8). ``tests/protocol/test_ed25519_rules.py``
#: re-derives them that way and checks ``8·P = identity`` for each by point doubling. Since
#: every point has exactly one canonical encoding, "canonical and in this list" is exactly
#: "of small order".
SMALL_ORDER_ENCODINGS: Final = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity (0, 1)
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "0000000000000000000000000000000000000000000000000000000000000080",  # y = 0, x odd
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # (0, -1)
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "0000000000000000000000000000000000000000000000000000000000000000",  # y = 0, x even
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    )
)

#: Why an encoding is refused (as a public key, or as a signature's ``R``).
PointProblem = Literal["wrong_length", "non_canonical", "small_order", "not_on_curve"]
#: Why a signature is refused before the backend verifies it.
SignatureProblem = Literal["wrong_length", "non_canonical_s", "non_canonical", "small_order"]


def encoding_problem(encoded: bytes) -> Literal["wrong_length", "non_canonical"] | None:
    """Whether ``encoded`` is 32 bytes in the one canonical form a point can have.

    Canonical means the little-endian 255-bit ``y`` is below ``p`` and the top bit (the sign
    of ``x``) is clear when ``x = 0``. ``x = 0`` exactly when ``y² = 1``, i.e. ``y`` is 1 or
    ``p - 1`` (the curve equation gives ``x² = (y² - 1) / (d·y² + 1)``), so this is a check on
    the bytes alone. These are the two "decoding fails" cases of RFC 8032 §5.1.3 that do not
    depend on a square root.
    """
    if len(encoded) != POINT_BYTES:
        return "wrong_length"
    raw = int.from_bytes(encoded, "little")
    y = raw & _Y_MASK
    if y >= P or (raw >> 255 and y in (1, P - 1)):
        return "non_canonical"
    return None


def decode_point(encoded: bytes) -> tuple[int, int] | None:
    """Affine ``(x, y)`` of a canonically encoded curve point, or ``None`` (RFC 8032 §5.1.3)."""
    if encoding_problem(encoded) is not None:
        return None
    raw = int.from_bytes(encoded, "little")
    y = raw & _Y_MASK
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    # Candidate root x = u v^3 (u v^7)^((p-5)/8); if v x^2 = -u, the root is x·sqrt(-1).
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vx2 = v * x * x % P
    if vx2 != u:
        if vx2 != (-u) % P:
            return None
        x = x * SQRT_M1 % P
    if x & 1 != raw >> 255:
        x = P - x
    return x, y


def public_key_problem(encoded: bytes) -> PointProblem | None:
    """Why ``encoded`` is not an acceptable public key (node id); ``None`` if it is.

    Checked cheapest first: length and canonical form, then the small-order list, then the
    square root that tells whether the point is on the curve at all.
    """
    encoded = bytes(encoded)  # a bytearray or memoryview cannot be looked up in a set
    problem = encoding_problem(encoded)
    if problem is not None:
        return problem
    if encoded in SMALL_ORDER_ENCODINGS:
        return "small_order"
    return None if decode_point(encoded) is not None else "not_on_curve"


def signature_problem(signature: bytes) -> SignatureProblem | None:
    """Why ``signature`` (``R ‖ S``) is refused before the backend verifies it; ``None`` if not.

    ``S`` (bytes 32..63, little-endian) must be below ``L``; ``R`` (bytes 0..31) must be
    canonical and not of small order.
    """
    if len(signature) != SIGNATURE_BYTES:
        return "wrong_length"
    if int.from_bytes(signature[POINT_BYTES:], "little") >= L:
        return "non_canonical_s"
    r = bytes(signature[:POINT_BYTES])
    problem = encoding_problem(r)
    if problem is not None:
        return problem
    return "small_order" if r in SMALL_ORDER_ENCODINGS else None


def acceptable_public_key(encoded: bytes) -> bool:
    """True if ``encoded`` is a canonical curve point of large order (see the module doc)."""
    return public_key_problem(encoded) is None


def acceptable_signature(signature: bytes) -> bool:
    """True if ``signature`` has ``S < L`` and a canonical ``R`` that is not of small order."""
    return signature_problem(signature) is None
