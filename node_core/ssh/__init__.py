"""The node's SSH server: the console and script commands for operators with a key.

See :mod:`node_core.ssh.server` for the shape, :mod:`node_core.ssh.authkeys` for the key file.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh still names DSA types at import time, and cryptography 51 deprecates them: each
# ``zakura`` process would print ten lines of a library's deprecation notice on stderr before
# its own output (and a one-line error would no longer be one line). The notice is about
# asyncssh's own imports, not about anything an operator did (the host key is Ed25519), so it
# is silenced for asyncssh's modules only. Set here, before any module of this package
# imports asyncssh.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)")

from node_core.ssh.config import SshConfig  # noqa: E402
from node_core.ssh.server import SshServer, SshStartError  # noqa: E402

__all__ = ["SshConfig", "SshServer", "SshStartError"]
