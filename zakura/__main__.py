"""``python -m zakura ...`` behaves exactly like the ``zakura`` console script.

The testnet starts its children this way (``sys.executable -m zakura node ...``) so a child
always runs the same interpreter and code as its parent, installed script or not.
"""

from __future__ import annotations

import sys

from zakura.cli import main

if __name__ == "__main__":
    sys.exit(main())
