"""A node's long-lived Ed25519 identity: the key on disk, the node id, and the peer label.

The node id *is* the raw 32-byte Ed25519 public key, so a peer proves who it is simply by
signing (the handshake transcript, its node record). Losing the key file means becoming a
different node; leaking it means anyone can impersonate this node. Hence the care below:

- Key file format: ``<data_dir>/node_key`` holds exactly the 32-byte raw Ed25519 private seed
  (RFC 8032), no PEM armour and no newline. A fixed-size binary file has only one valid
  shape, so any truncation or stray edit is detected as a wrong length instead of being
  half-parsed.
- The file is created ``0600`` at the moment it comes into existence (``O_CREAT | O_EXCL``
  with an explicit mode), so it is never world-readable, not even for an instant. It is
  written under a temporary name first and hard-linked into place, so a crash mid-write
  leaves no truncated key behind and two processes racing to create it end up sharing one
  key instead of clobbering each other.
- On load, a key readable or writable by group/other is refused rather than silently used:
  the operator must see that the secret was exposed and fix it (``chmod 600``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from node_core.protocol import ed25519_rules

KEY_FILE_NAME = "node_key"
NODE_ID_BYTES = 32
SEED_BYTES = 32
SIGNATURE_BYTES = 64
#: Personalisation of the label hash, as the reference's trace writer uses it.
PEER_LABEL_PERSON = b"zakura-peer-lbl"


class IdentityError(Exception):
    """The node's key could not be loaded or created; the message tells the operator why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """This node's signing key plus the values derived from it.

    Attributes:
        private_key: The Ed25519 signing key. Excluded from ``repr`` and comparisons so that
            a log line or a failed assertion never prints (or depends on) secret material.
        node_id: The raw 32-byte public key; what peers authenticate and records carry.
        label: ``peer_label(node_id)``, the short form used in logs, traces and the console.
    """

    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    node_id: bytes
    label: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> Identity:
        """Derive node id and label from a key, so the three can never disagree."""
        node_id = private_key.public_key().public_bytes_raw()
        return cls(private_key=private_key, node_id=node_id, label=peer_label(node_id))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Build an identity from a 32-byte seed (deterministic keys for tests and testnets).

        Raises:
            IdentityError: If the seed is not exactly 32 bytes.
        """
        if len(seed) != SEED_BYTES:
            raise IdentityError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls.from_private_key(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity that is never written to disk (ephemeral nodes, tests)."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    def __repr__(self) -> str:
        # Never the key; the label alone is what operators recognise.
        return f"Identity({self.label}, node_id={self.node_id.hex()})"

    def sign(self, msg: bytes) -> bytes:
        """Sign ``msg``; returns the 64-byte Ed25519 signature."""
        return self.private_key.sign(bytes(msg))


def load_or_create(data_dir: Path) -> Identity:
    """Load ``data_dir/node_key``, creating the directory and a fresh key if they are missing.

    Args:
        data_dir: The node's data directory. Created with mode 0700 if absent.

    Returns:
        The node's identity.

    Raises:
        IdentityError: If the key file is exposed to group/other, not a regular file, of the
            wrong length, or cannot be read or written. The message names the file.
    """
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise IdentityError(f"cannot create data directory {data_dir}: {exc}") from exc
    path = data_dir / KEY_FILE_NAME
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    _create(path)
    try:
        return _load(path)
    except FileNotFoundError as exc:
        # e.g. a dangling symlink: the name exists, so we must not create, yet nothing loads.
        raise IdentityError(f"node key {path} exists but cannot be opened: {exc}") from exc


def _load(path: Path) -> Identity:
    """Read and check the key file; ``FileNotFoundError`` propagates so the caller can create."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise  # the caller decides whether to create
    except OSError as exc:
        raise IdentityError(f"cannot open node key {path}: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IdentityError(f"node key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise IdentityError(
                f"node key {path} is accessible by group/other "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); the key may have been exposed. "
                f"If it is still trusted, run `chmod 600 {path}`; otherwise delete it to "
                f"create a new node identity"
            )
        # Read one byte more than a seed so an over-long file is detected without
        # slurping an arbitrarily large file into memory.
        seed = _read_up_to(fd, SEED_BYTES + 1)
    except OSError as exc:
        raise IdentityError(f"cannot read node key {path}: {exc}") from exc
    finally:
        os.close(fd)
    if len(seed) != SEED_BYTES:
        raise IdentityError(
            f"node key {path} is corrupt: expected exactly {SEED_BYTES} bytes (a raw Ed25519 "
            f"seed), found {'more' if len(seed) > SEED_BYTES else len(seed)}"
        )
    return Identity.from_seed(seed)


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = os.read(fd, limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _create(path: Path) -> None:
    """Write a new seed under a temporary name (0600 from birth) and link it into place.

    ``os.link`` fails if ``path`` already exists, so a concurrent creator's key is never
    overwritten: the loser simply loads the winner's key afterwards.
    """
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # a leftover from a crashed run of this very pid
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            view = memoryview(seed)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        _fsync_dir(path.parent)
    except OSError as exc:
        raise IdentityError(f"cannot create node key {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the new directory entry durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def verify(node_id: bytes, msg: bytes, sig: bytes) -> bool:
    """Check an Ed25519 signature by ``node_id`` over ``msg``, under the strict rules.

    The one place every peer signature is checked (handshake transcripts, node records).
    Before the backend verifies, the key must pass :func:`is_valid_node_id` and the signature
    must have a canonical ``S < L`` and an ``R`` that is a canonical point of large order
    (:mod:`node_core.protocol.ed25519_rules`): otherwise a small-order node id such as the
    identity point ``01 00..00`` "signs" anything with ``R = identity, S = 0``.

    Inputs come from peers, so this never raises: a malformed key, a signature of the wrong
    length, one breaking the encoding rules or a forged one are all simply ``False``.
    """
    if len(node_id) != NODE_ID_BYTES or len(sig) != SIGNATURE_BYTES:
        return False
    if not is_valid_node_id(node_id) or not ed25519_rules.acceptable_signature(bytes(sig)):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(node_id)).verify(bytes(sig), bytes(msg))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def is_valid_node_id(node_id: bytes) -> bool:
    """True if ``node_id`` is the canonical encoding of an Ed25519 point of large order.

    Refused: anything but 32 bytes, a non-canonical encoding (``y >= p``, or the x-sign bit
    set with ``x = 0``), bytes that do not decode to a curve point (RFC 8032 §5.1.3), and the
    eight small-order points (``8·P = identity``), for which signatures can be forged without
    a key. Checking this ourselves, rather than leaving it to the backend (which accepts any
    32 bytes as a key and only fails at verification time, and then not for small-order
    keys), also keeps "this is not a key at all" distinct from "bad signature" in the logs.
    """
    return ed25519_rules.acceptable_public_key(node_id)


def peer_label(node_id: bytes) -> str:
    """``peer:`` + 16 hex chars of a personalised 8-byte BLAKE2b of the node id.

    Short enough for a table column, long enough that labels of distinct peers do not
    collide in practice, and identical to the reference's trace labels so traces compare.
    """
    digest = hashlib.blake2b(bytes(node_id), digest_size=8, person=PEER_LABEL_PERSON)
    return "peer:" + digest.hexdigest()
