"""The SSH authorized-keys file: OpenSSH's format, one role per key, re-read when it changes.

Each line is an OpenSSH ``authorized_keys`` entry. A key's role is the option
``zakura-role=operator`` or ``zakura-role=viewer``; a key without it is a viewer, so granting
control is always an explicit act. OpenSSH's own options (``from=``, ``no-pty``,
``command=``, ...) are enforced by asyncssh, which parses the same format::

    zakura-role=operator ssh-ed25519 AAAAC3Nz... alice@laptop
    from="127.0.0.1",zakura-role=viewer ssh-ed25519 AAAAC3Nz... dashboard
    ssh-ed25519 AAAAC3Nz... bob (a viewer)

To learn which entry a client authenticated with, every entry handed to asyncssh carries one
more option, ``zakura-entry=N``; asyncssh keeps unknown options and
``conn.get_key_option("zakura-entry")`` gives N back after authentication. A line that does
not parse is skipped and reported (with its number), never fatal: one typo must not lock
every operator out of a running node.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from node_core.control import Role

__all__ = ["ROLE_OPTION", "AuthorizedKeys", "KeyEntry"]

log = logging.getLogger(__name__)

#: The option that names a key's role.
ROLE_OPTION = "zakura-role"
#: The option this module adds to find the matched entry again.
ENTRY_OPTION = "zakura-entry"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One usable line of the file: who it lets in, and as what."""

    line_no: int
    role: Role
    fingerprint: str
    comment: str


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One reading of the file: the asyncssh matcher and the entries it stands for."""

    matcher: asyncssh.SSHAuthorizedKeys | None
    entries: tuple[KeyEntry, ...]
    problems: tuple[str, ...]

    def entry(self, options: object) -> KeyEntry | None:
        """The entry asyncssh matched, from ``conn.get_key_option(ENTRY_OPTION)``."""
        if not isinstance(options, list) or len(options) != 1:
            return None
        try:
            index = int(options[0])
        except (TypeError, ValueError):
            return None
        return self.entries[index] if 0 <= index < len(self.entries) else None


def _split_options(line: str) -> tuple[str, str]:
    """``(options, rest)`` of an authorized_keys line; options is "" when there are none."""
    first = line.split(None, 1)[0]
    if first.startswith(("ssh-", "ecdsa-", "sk-")):
        return "", line
    quoted = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].strip()
    return line, ""


def _role_of(options: str, line_no: int) -> Role:
    roles = [
        o.split("=", 1)[1].strip('"')
        for o in options.split(",")
        if o.strip().startswith(ROLE_OPTION + "=")
    ]
    if not roles:
        return Role.VIEWER
    if len(roles) > 1 or roles[0] not in {r.value for r in Role}:
        raise ValueError(
            f"{ROLE_OPTION} must appear once, as {ROLE_OPTION}=viewer or {ROLE_OPTION}=operator"
        )
    return Role(roles[0])


def parse(text: str, source: str) -> KeyFile:
    """Read ``text`` (the file's contents); ``source`` names it in problems."""
    tagged: list[str] = []
    entries: list[KeyEntry] = []
    problems: list[str] = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            options, rest = _split_options(line)
            role = _role_of(options, line_no)
            try:
                asyncssh.import_authorized_keys(line)  # raises on a bad option
            except ValueError as exc:
                if "No valid entries" in str(exc):
                    raise ValueError("not a public key line") from None
                raise
            parts = rest.split()
            key = asyncssh.import_public_key(" ".join(parts[:2]))
            comment = " ".join(parts[2:])
        except (ValueError, asyncssh.KeyImportError, IndexError) as exc:
            problems.append(f"{source}:{line_no}: skipped ({exc})")
            continue
        marker = f"{ENTRY_OPTION}={len(entries)}"
        tagged.append(f"{marker},{options} {rest}" if options else f"{marker} {rest}")
        entries.append(KeyEntry(line_no, role, key.get_fingerprint("sha256"), comment))
    matcher = asyncssh.import_authorized_keys("\n".join(tagged)) if tagged else None
    return KeyFile(matcher, tuple(entries), tuple(problems))


class AuthorizedKeys:
    """The file, re-read when its mtime, size or inode change (one ``stat`` per login)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self.current = KeyFile(None, (), ())

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> KeyFile:
        """Read the file now; raises :class:`OSError` if it cannot be read at all."""
        text = self.path.read_text(encoding="utf-8", errors="replace")
        self._stamp = self._file_stamp()
        self.current = parse(text, str(self.path))
        for problem in self.current.problems:
            log.warning("ssh authorized keys: %s", problem)
        return self.current

    def refresh(self) -> KeyFile:
        """The current keys, re-read first if the file changed. A file that went away lets
        nobody in (deleting it is how an operator shuts the door) until it is back."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self.current
        if stamp is None:
            log.warning("ssh authorized keys: %s is gone: every login is refused", self.path)
            self._stamp, self.current = None, KeyFile(None, (), ())
            return self.current
        try:
            self.load()
        except OSError as exc:
            log.warning(
                "ssh authorized keys: cannot read %s (%s): keeping the last", self.path, exc
            )
        else:
            log.info(
                "ssh authorized keys: %s re-read: %d keys", self.path, len(self.current.entries)
            )
        return self.current
