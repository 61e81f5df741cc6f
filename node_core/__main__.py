"""``python -m node_core`` is not a command: the command line is the ``zakura`` package.

``node_core`` is the library at the bottom of the layers and imports nothing above it, so this
only points to the command (docs/ARCHITECTURE.md, "Layers and packages").
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    print(
        "node_core is a library; run `zakura` or `python -m zakura` (e.g. python -m zakura node)",
        file=sys.stderr,
    )
    sys.exit(2)
