"""Bearer tokens for the control API: made once, stored only as hashes, checked in constant time.

A token is ``zk_`` + 43 url-safe base64 characters (32 random bytes): printed once when it
is made, never stored, never logged. The node keeps ``<data_dir>/api_tokens.json`` (mode
0600, refused if group or others can read it) with, per token, its name, role, creation
time and SHA-256 hash; 256 random bits need no slow hash. A running node re-reads the file
when it changes, so ``zakura token revoke`` takes effect without a restart.

Invariants:

- The file only ever holds hashes; a token is compared with :func:`hmac.compare_digest`.
- Names are unique; a revoked token's entry is deleted, so its hash no longer matches.
- Writes are atomic (a temporary file renamed over the old one), so a node reading while
  ``zakura token`` writes sees the old or the new list, never half of one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from node_core.control import Principal, Role

__all__ = ["TOKEN_FILE", "TokenError", "TokenInfo", "TokenStore", "new_token"]

TOKEN_FILE = "api_tokens.json"
TOKEN_PREFIX = "zk_"
#: Names are shown in journals and audit lines: short, printable, no spaces.
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Longest Authorization value looked at (a token is 46 characters).
MAX_TOKEN_CHARS = 128


class TokenError(Exception):
    """A token file or command problem; the message says what to do."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One stored token: what ``zakura token list`` shows (never the token itself)."""

    name: str
    role: Role
    created: float
    sha256: str


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class TokenStore:
    """The tokens of one data dir; :meth:`authenticate` is what the API calls per request."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TOKEN_FILE
        self._tokens: dict[str, TokenInfo] = {}  # sha256 hex -> info
        #: Tokens of live sessions (an SSH console's child): in memory only, never in the
        #: file, gone when the session ends or the node stops.
        self._sessions: dict[str, TokenInfo] = {}
        self._stamp: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ reading
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self) -> None:
        """Re-read the file when it changed since the last read (cheap: one ``stat``)."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._tokens = {} if stamp is None else self._read()
        self._stamp = stamp

    def _read(self) -> dict[str, TokenInfo]:
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenError(
                f"{self.path} is readable by others (mode {stat.S_IMODE(mode):o}): "
                f"run chmod 600 {self.path}"
            )
        try:
            doc = orjson.loads(self.path.read_bytes())
            entries = doc["tokens"]
            out = {}
            for e in entries:
                info = TokenInfo(str(e["name"]), Role(e["role"]), float(e["created"]), e["sha256"])
                if not re.fullmatch(r"[0-9a-f]{64}", info.sha256):
                    raise ValueError("bad hash")
                out[info.sha256] = info
            return out
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TokenError(
                f"{self.path} is not a token file this node can read ({exc.__class__.__name__}); "
                "move it away and create tokens again with 'zakura token create'"
            ) from None

    @property
    def tokens(self) -> list[TokenInfo]:
        self.reload_if_changed()
        return sorted(self._tokens.values(), key=lambda t: t.created)

    def __len__(self) -> int:
        self.reload_if_changed()
        return len(self._tokens)

    def authenticate(self, token: str) -> Principal | None:
        """The principal a presented token stands for, or None (unknown or revoked)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        self.reload_if_changed()
        digest = _digest(token)
        for known, info in (*self._tokens.items(), *self._sessions.items()):
            if hmac.compare_digest(known, digest):
                return Principal(info.name, info.role)
        return None

    # ------------------------------------------------------------------ sessions
    def add_session(self, name: str, role: Role) -> str:
        """A token that lives only as long as one session (see :meth:`drop_session`).

        It is never written anywhere, so a session's child process can be given a token of
        exactly its key's role without touching the operator's token file; ``name`` (free
        text, e.g. ``ssh:alice:SHA256:...``) is what the journal shows as ``by``."""
        token = new_token()
        digest = _digest(token)
        self._sessions[digest] = TokenInfo(name, Role(role), time.time(), digest)
        return token

    def drop_session(self, token: str) -> None:
        """End a session token: requests carrying it are refused from now on."""
        self._sessions.pop(_digest(token), None)

    # ------------------------------------------------------------------ writing
    def _write(self, tokens: dict[str, TokenInfo]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": 1,
            "tokens": [
                {"name": t.name, "role": t.role.value, "created": t.created, "sha256": t.sha256}
                for t in sorted(tokens.values(), key=lambda t: t.created)
            ],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._tokens, self._stamp = dict(tokens), self._file_stamp()

    def create(self, name: str, role: Role) -> str:
        """Make a token for ``name``; returns it (the only time it exists in clear)."""
        if not NAME_RE.match(name):
            raise TokenError(
                f"token name {name[:40]!r} must be 1-64 letters, digits or ._@- (no spaces)"
            )
        self.reload_if_changed()
        if any(t.name == name for t in self._tokens.values()):
            raise TokenError(f"a token named {name!r} exists: revoke it first or pick another name")
        token = new_token()
        info = TokenInfo(name, Role(role), time.time(), _digest(token))
        self._write({**self._tokens, info.sha256: info})
        return token

    def revoke(self, name: str) -> TokenInfo:
        self.reload_if_changed()
        for digest, info in self._tokens.items():
            if info.name == name:
                rest = {d: i for d, i in self._tokens.items() if d != digest}
                self._write(rest)
                return info
        raise TokenError(f"no token named {name[:64]!r} (see 'zakura token list')")
