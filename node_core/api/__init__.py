"""The node's control API (aiohttp): tokens, read routes, write routes, the live stream.

``server`` composes the application; ``tokens`` keeps bearer tokens; ``routes`` holds the
read and write handlers (every write goes through :func:`node_core.control.apply`);
``stream`` is the WebSocket feed. docs/ARCHITECTURE.md, "The control model", says how it fits.
"""

from __future__ import annotations

from node_core.api.server import ApiServer, ApiStartError

__all__ = ["ApiServer", "ApiStartError"]
