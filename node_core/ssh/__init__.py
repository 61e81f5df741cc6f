"""The node's SSH server: the console and script commands for operators with a key.

See :mod:`node_core.ssh.server` for the shape, :mod:`node_core.ssh.authkeys` for the key file.
"""

from node_core.ssh.config import SshConfig
from node_core.ssh.server import SshServer, SshStartError

__all__ = ["SshConfig", "SshServer", "SshStartError"]
