"""zakura: the command line, the application layer above :mod:`node_core` and :mod:`console`.

The only package that imports both (docs/ARCHITECTURE.md, "Layers and packages"): the
subcommands (:mod:`zakura.cli`), the local testnet of node processes (:mod:`zakura.testnet`),
the demo view, and where the console's own node runs (:mod:`zakura.local_network`,
:mod:`zakura.node_thread`).
"""
