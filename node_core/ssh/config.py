"""What ``--ssh`` configures: where to listen, who may log in, and how sessions are bounded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SshConfig"]


@dataclass(frozen=True, slots=True)
class SshConfig:
    """The SSH server of one node.

    ``console_argv`` is the program an interactive session runs on its PTY, given the API URL
    as its last argument and a session token in ``ZAKURA_TOKEN``; the application layer
    supplies it (``zakura attach``), so this package never names the command line above it.
    """

    host: str
    port: int
    authorized_keys: Path
    console_argv: tuple[str, ...]
    #: Interactive sessions open at once; the next one is told so and closed.
    max_sessions: int = 8
    #: An interactive session with no keystroke for this long is ended (seconds; 0: never).
    idle_timeout: float = 1800.0
    #: Failed logins from one address within ``fail_window`` seconds before it is refused.
    max_failures: int = 10
    fail_window: float = 60.0

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0 seconds, got {self.idle_timeout}")
        if not self.console_argv:
            raise ValueError("console_argv must name a program")
