"""Node identity: key file handling, signatures, node id validity and peer labels."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node_core import identity as ident
from node_core.identity import (
    Identity,
    IdentityError,
    is_valid_node_id,
    load_or_create,
    peer_label,
    verify,
)

# RFC 8032 §7.1, test 1 (empty message): an independent check of keys and signatures.
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
    "701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


# docs/PROTOCOL.md §2, the canonical encodings of the eight small-order points.
SMALL_ORDER_HEX = """
0100000000000000000000000000000000000000000000000000000000000000
26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85
0000000000000000000000000000000000000000000000000000000000000080
c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa
ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a
0000000000000000000000000000000000000000000000000000000000000000
26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- key file ----------------------------------------------------------------------------


def test_creates_data_dir_and_private_key_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "node"
    identity = load_or_create(data_dir)
    key = data_dir / "node_key"
    assert _mode(data_dir) == 0o700
    assert _mode(key) == 0o600
    assert len(key.read_bytes()) == 32
    assert Identity.from_seed(key.read_bytes()).node_id == identity.node_id
    assert identity.label == peer_label(identity.node_id)
    # No temporary file is left behind.
    assert sorted(p.name for p in data_dir.iterdir()) == ["node_key"]


def test_reload_returns_same_identity(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    second = load_or_create(tmp_path)
    assert first == second
    assert first.node_id == second.node_id
    assert verify(first.node_id, b"m", second.sign(b"m"))


def test_key_is_private_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create(tmp_path / "d")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "d" / "node_key") == 0o600


def test_existing_data_dir_is_reused(tmp_path: Path) -> None:
    (tmp_path / "other").write_text("keep")
    load_or_create(tmp_path)
    assert (tmp_path / "other").read_text() == "keep"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700, 0o666])
def test_exposed_key_file_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create(tmp_path)
    key = tmp_path / "node_key"
    before = key.read_bytes()
    key.chmod(mode)
    if mode & 0o077 == 0:
        # 0700 has no group/other bits: still private, so it loads.
        load_or_create(tmp_path)
        return
    with pytest.raises(IdentityError) as info:
        load_or_create(tmp_path)
    message = str(info.value)
    assert "chmod 600" in message
    assert str(key) in message
    # Refusing must not "fix" or replace the operator's key behind their back.
    assert key.read_bytes() == before
    assert _mode(key) == mode


@pytest.mark.parametrize("content", [b"", b"\x01" * 31, b"\x01" * 33, b"\x01" * 4096])
def test_wrong_length_key_is_refused_naming_the_file(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "node_key"
    fd = os.open(key, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(IdentityError, match="corrupt") as info:
        load_or_create(tmp_path)
    assert str(key) in str(info.value)
    assert key.read_bytes() == content


def test_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node_key").mkdir(mode=0o700)
    with pytest.raises(IdentityError, match="not a regular file"):
        load_or_create(tmp_path)


def test_dangling_symlink_key_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "node_key").symlink_to(tmp_path / "missing")
    with pytest.raises(IdentityError, match="node_key"):
        load_or_create(tmp_path)
    assert (tmp_path / "node_key").is_symlink()
    assert not (tmp_path / "missing").exists()


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(IdentityError, match="data directory"):
        load_or_create(tmp_path / "f")


def test_create_never_overwrites_an_existing_key(tmp_path: Path) -> None:
    # Simulates losing a creation race: the other process linked its key first.
    winner = load_or_create(tmp_path)
    ident._create(tmp_path / "node_key")
    assert load_or_create(tmp_path) == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node_key"]


def test_seed_of_wrong_length_is_refused() -> None:
    with pytest.raises(IdentityError):
        Identity.from_seed(b"\x00" * 31)


def test_repr_never_shows_the_key() -> None:
    identity = Identity.from_seed(RFC_SEED)
    text = repr(identity)
    assert RFC_SEED.hex() not in text
    assert identity.label in text


# --- signatures ----------------------------------------------------------------------------


def test_rfc8032_vector() -> None:
    identity = Identity.from_seed(RFC_SEED)
    assert identity.node_id == RFC_PUBLIC
    assert identity.sign(b"") == RFC_SIG
    assert verify(RFC_PUBLIC, b"", RFC_SIG)


def test_verify_rejects_tampering() -> None:
    identity = Identity.generate()
    sig = identity.sign(b"hello")
    assert verify(identity.node_id, b"hello", sig)
    assert not verify(identity.node_id, b"hellO", sig)
    assert not verify(Identity.generate().node_id, b"hello", sig)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(identity.node_id, b"hello", flipped)
    assert not verify(identity.node_id, b"hello", sig[:63])
    assert not verify(identity.node_id, b"hello", sig + b"\x00")
    assert not verify(identity.node_id[:31], b"hello", sig)
    assert not verify(b"", b"hello", sig)


@given(node_id=st.binary(max_size=40), msg=st.binary(max_size=64), sig=st.binary(max_size=70))
def test_verify_never_raises(node_id: bytes, msg: bytes, sig: bytes) -> None:
    assert verify(node_id, msg, sig) in (True, False)


# --- node id validity ----------------------------------------------------------------------


@given(seed=st.binary(min_size=32, max_size=32))
def test_every_real_public_key_is_a_valid_node_id(seed: bytes) -> None:
    node_id = Identity.from_seed(seed).node_id
    assert is_valid_node_id(node_id)
    # The negated point (sign bit flipped) is on the curve too.
    assert is_valid_node_id(node_id[:31] + bytes([node_id[31] ^ 0x80]))


def test_invalid_node_ids() -> None:
    assert is_valid_node_id(RFC_PUBLIC)
    assert not is_valid_node_id(RFC_PUBLIC[:31])
    assert not is_valid_node_id(b"")
    # y >= p is a non-canonical encoding.
    assert not is_valid_node_id(b"\xff" * 31 + b"\x7f")
    # About half of all y values have no x on the curve; find one and check it is refused
    # by verification too, whatever the signature.
    off_curve = next(
        y.to_bytes(32, "little")
        for y in range(2, 1000)
        if not is_valid_node_id(y.to_bytes(32, "little"))
    )
    assert not verify(off_curve, b"m", b"\x00" * 64)


def test_small_order_and_non_canonical_node_ids_are_invalid() -> None:
    """docs/PROTOCOL.md §2: the eight small-order points (listed there) and non-canonical
    encodings are not node ids, so nobody can claim one and forge its signatures."""
    listed = {bytes.fromhex(line) for line in SMALL_ORDER_HEX.split()}
    assert len(listed) == 8
    for node_id in listed:
        assert not is_valid_node_id(node_id)
    p = 2**255 - 19
    assert not is_valid_node_id((p + 1).to_bytes(32, "little"))  # the identity, unreduced
    assert not is_valid_node_id(b"\x01" + bytes(30) + b"\x80")  # the identity, x-sign set


def test_verify_refuses_forgeries_and_malleated_signatures() -> None:
    identity_point = b"\x01" + bytes(31)
    # Issue 16 defect 3: this "signature" verifies for every message under plain RFC 8032.
    assert not verify(identity_point, b"any", identity_point + bytes(32))
    honest = Identity.generate()
    sig = honest.sign(b"m")
    group_order = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = int.from_bytes(sig[32:], "little") + group_order
    assert not verify(honest.node_id, b"m", sig[:32] + s_plus_l.to_bytes(32, "little"))
    assert verify(honest.node_id, b"m", sig)


def test_roughly_half_of_random_ids_are_on_the_curve() -> None:
    rng = random.Random(7)
    valid = sum(is_valid_node_id(rng.randbytes(32)) for _ in range(2000))
    assert 850 < valid < 1150


# --- labels --------------------------------------------------------------------------------


def test_peer_label_is_pinned() -> None:
    assert peer_label(bytes(32)) == "peer:be6bbc5e428800ba"
    assert peer_label(bytes(range(32))) == "peer:8f171628ad161c90"


@given(node_id=st.binary(min_size=32, max_size=32))
def test_peer_label_shape(node_id: bytes) -> None:
    label = peer_label(node_id)
    assert label.startswith("peer:")
    assert len(label) == 5 + 16
    int(label[5:], 16)
