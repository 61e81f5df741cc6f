"""What the sync benchmarks share: how servers get the template chain, and the client config.

Both the header-sync and the block-sync benchmark pre-generate one chain into a template
store and give every server a byte copy of it, and both sync with the protocol's largest
header responses; keeping that here keeps their set-ups the same by construction.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from node_core.chain.chainstate import CHAIN_FILE
from node_core.header_sync.entries import HeaderSyncConfig
from node_core.protocol.header_sync import MAX_HEADERS_PER_RESPONSE

#: Headers per response on servers and client: the protocol maximum (the default is 1000).
HEADERS_PER_RESPONSE = MAX_HEADERS_PER_RESPONSE


def copy_store(template: Path, data_dir: Path) -> None:
    """Give another server the same chain: a byte copy of the closed SQLite file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, data_dir / CHAIN_FILE)


def header_sync_config() -> HeaderSyncConfig:
    return HeaderSyncConfig(max_headers_per_response=HEADERS_PER_RESPONSE)
