"""The node's SSH host key: Ed25519, made on first start, kept so clients' known_hosts hold.

It lives in ``<data_dir>/ssh_host_ed25519_key`` (mode 0600, created with ``O_EXCL`` so it is
never world-readable for an instant and never overwritten); a key that group or others can
read is refused, like the node's identity key, because whoever holds it can impersonate the
node to every operator.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import asyncssh

__all__ = ["HOST_KEY_FILE", "HostKey", "HostKeyError", "load_or_create"]

HOST_KEY_FILE = "ssh_host_ed25519_key"


class HostKeyError(Exception):
    """The host key file cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class HostKey:
    key: asyncssh.SSHKey
    path: Path
    created: bool

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))


def load_or_create(data_dir: Path) -> HostKey:
    """The data dir's host key, made now if there is none."""
    path = Path(data_dir) / HOST_KEY_FILE
    created = False
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="zakura node host key")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another start made it first: read theirs
        except OSError as exc:
            raise HostKeyError(f"cannot create {path}: {exc.strerror}") from None
        else:
            try:
                os.write(fd, key.export_private_key())
                os.fsync(fd)
            finally:
                os.close(fd)
            created = True
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HostKeyError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): run chmod 600 {path}"
        )
    try:
        key = asyncssh.read_private_key(path)
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise HostKeyError(
            f"{path} is not an SSH private key this node can read ({exc}); move it away and a "
            "new one is made on the next start (clients will see a changed host key)"
        ) from None
    return HostKey(key, path, created)
